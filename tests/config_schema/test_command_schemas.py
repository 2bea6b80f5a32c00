"""The other commands' schemas (sample, test, encode, shards, bench and each benchmark) on the real config tree: the
shipped files pass, their keys and defaults are the schema's (they cannot drift apart), and a bad value of each
command fails in one line naming the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from wantrain.config_schema import SCHEMAS, OptionError, check_config, schema_of
from wantrain.config_schema.bench import BENCHES
from wantrain.config_tree import config_dir
from wantrain.schema import key_of

CONFIGS = [(name, None) for name in SCHEMAS] + [("bench", action) for action in BENCHES]


def _compose(compose, tmp_path: Path, config_name: str, action: str | None, *overrides: str):
    extra = [f"bench={action}"] if action else []
    return compose(*extra, *overrides, config_name=config_name, root=tmp_path)


@pytest.mark.parametrize(("config_name", "action"), CONFIGS)
def test_every_shipped_config_passes_its_schema(compose, tmp_path, config_name: str, action: str | None) -> None:
    check_config(_compose(compose, tmp_path, config_name, action), config_name, action)


def _file(config_name: str, action: str | None) -> Path:
    return config_dir() / "bench" / f"{action}.yaml" if action else config_dir() / f"{config_name}.yaml"


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def _same_keys_and_defaults(where: str, values: dict[str, Any], schema: type, skip: set[str]) -> None:
    fields = {key_of(f): f for f in dataclasses.fields(schema) if key_of(f) not in skip}
    assert set(values) == set(fields), f"{where}: only in the YAML {set(values) - set(fields)}, only in the schema " \
                                       f"{set(fields) - set(values)}"
    for key, value in values.items():
        default = _default(fields[key])
        if dataclasses.is_dataclass(default):
            _same_keys_and_defaults(f"{where}.{key}", value, type(default), set())
        elif not isinstance(default, dict):  # a free mapping (a model or UNet node): the YAML's own
            assert value == default, f"{where}.{key}: YAML {value!r}, schema {default!r}"


@pytest.mark.parametrize(("config_name", "action"), CONFIGS)
def test_every_yaml_key_is_a_schema_field_with_the_same_default(config_name: str, action: str | None) -> None:
    """The file's own keys (not its groups) and the schema's fields are the same set, with the same defaults."""
    values = OmegaConf.to_container(OmegaConf.load(_file(config_name, action)))
    defaults = values.pop("defaults", [])
    values.pop("hydra", None)
    groups = {str(group) for entry in defaults if isinstance(entry, dict) for group in entry}
    _same_keys_and_defaults(_file(config_name, action).name, values, schema_of(config_name, action),
                            groups | {"experiment"})


@pytest.mark.parametrize(("config_name", "action", "override", "message"), [
    ("sample", None, "crf=60", "crf=60: out of range, use a value >= 0 and <= 51"),
    ("sample", None, "steps=0", "steps=0: out of range, use a value >= 1 - null: the checkpoint's "
                                "model.sampling.num_steps; sampling steps"),
    ("sample", None, "sampler=ddin", "sampler='ddin': not allowed (did you mean ddim?); use one of ddim, dpm_solver"),
    ("sample", None, "precision=fp16", "precision='fp16': not allowed (did you mean bf16?); use one of auto, fp32, "
                                       "bf16"),
    ("sample", None, "device=gpu", "device='gpu': not allowed; use auto, cpu, cuda, cuda:N or mps"),
    ("sample", None, "tile=big", "tile='big': not allowed; use auto or a number >= 1"),
    ("sample", None, "+promt=x", "unknown config key promt: remove it or fix its spelling (did you mean prompt?)"),
    ("test", None, "data.num_workers=-2", "data.num_workers=-2: out of range, use a value >= 0"),
    ("test", None, "diffusion.num_videos=x", "diffusion.num_videos='x': expected int"),
    ("test", None, "upsampler.tile=0", "upsampler.tile=0: out of range, use a value >= 1"),
    ("encode", None, "latents=maybe", "latents='maybe': not allowed; use one of auto, true, false"),
    ("encode", None, "batch_size=0", "batch_size=0: out of range, use a value >= 1"),
    ("encode", None, "data.batch_size=0", "data.batch_size=0: out of range, use a value >= 1"),
    ("shards", None, "shard_size=0", "shard_size=0: out of range, use a value >= 1"),
    ("shards", None, "synthetic.size=4", "synthetic.size=4: out of range, use a value >= 8"),
    ("shards", None, "+inn=x", "unknown config key inn: remove it or fix its spelling (did you mean in?)"),
    ("bench", None, "seed=x", "seed='x': expected int"),
    ("bench", "data", "bench.workers=[1,-1]", "bench.workers=[1, -1]: out of range, use a value >= 0"),
    ("bench", "plan", "bench.mfu=2", "bench.mfu=2: out of range, use a value > 0 and <= 1"),
    ("bench", "quality", "bench.parts=[base,sx]", "bench.parts=[base, sx]: not allowed; use one of base, sr"),
    ("bench", "quality", "bench.base_model.ema_decay=2", "bench.base_model.ema_decay=2: out of range"),
    ("bench", "step", "bench.precision=16-mixed", "bench.precision='16-mixed': not allowed (did you mean "
                                                "bf16-mixed?); use one of auto, 32-true, bf16-mixed"),
    ("bench", "unet", "bench.latent.spatial_factor=0", "bench.latent.spatial_factor=0: out of range"),
    ("bench", "upsampler", "bench.discriminator=patch", "bench.discriminator='patch': not allowed (did you mean "
                                                        "patch3d?)"),
])
def test_a_bad_value_of_each_command_is_refused_in_one_line(compose, tmp_path, config_name: str, action: str | None,
                                                             override: str, message: str) -> None:
    cfg = _compose(compose, tmp_path, config_name, action, override)
    with pytest.raises(OptionError) as err:
        check_config(cfg, config_name, action)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
