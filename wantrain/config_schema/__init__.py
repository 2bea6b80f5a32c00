"""The typed config schema: checks a composed config before anything is built or written, so a wrong type, an
out-of-range value or an unknown key fails in one line naming the key, the value and what is allowed.

Importing the package is cheap (no torch, no Hydra): help pages read the schemas; the model options and the
`_target_` checks, which import the networks' modules, are imported by `check_config`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wantrain.config_schema.bench import BENCHES, RESOLVED_BY_THE_BENCHMARK, BenchOptions
from wantrain.config_schema.commands import EncodeOptions, EvalOptions, SampleOptions, ShardsOptions
from wantrain.config_schema.data import DataOptions
from wantrain.config_schema.run import RunOptions, TrainerOptions
from wantrain.schema import OptionError, check_options

__all__ = ["OptionError", "SCHEMAS", "check_config", "plain_config", "schema_of"]

# each command config's own keys, by config name (conf/NAME.yaml); `bench`'s node by action: BENCHES
SCHEMAS: dict[str, type] = {"config": RunOptions, "sample": SampleOptions, "test": EvalOptions,
                            "encode": EncodeOptions, "shards": ShardsOptions, "bench": BenchOptions}
# configs that compose the training groups (data, model, trainer), checked as `fit` checks them
TRAINING_GROUPS = ("config", "encode")


def schema_of(config_name: str, action: str | None = None) -> type | None:
    """The schema of conf/CONFIG_NAME.yaml's own keys, or with `bench` and an action that benchmark's `bench.*`."""
    if config_name == "bench" and action is not None:
        return BENCHES.get(action)
    return SCHEMAS.get(config_name)


def plain_config(cfg: DictConfig, raw: Sequence[str] = ()) -> dict[str, Any]:
    """The config as plain values, interpolations resolved (mandatory `???` values stay as they are), except in the
    nodes at the dotted keys `raw` (their interpolations are resolved later, against another root)."""
    kept = {key: OmegaConf.select(cfg, key) for key in raw if OmegaConf.select(cfg, key) is not None}
    if kept:
        cfg = copy.deepcopy(cfg)
        for key in kept:
            OmegaConf.update(cfg, key, None, merge=False)
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "the config"
        raise OptionError(f"{key}: {str(err).splitlines()[0]}") from None
    for key, node in kept.items():
        *parents, name = key.split(".")
        parent = values
        for part in parents:
            parent = parent[part]
        parent[name] = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    return values  # type: ignore[return-value]


def check_config(cfg: DictConfig, config_name: str = "config", action: str | None = None) -> None:
    """Check a composed config: the command's own keys by its schema (`bench`: also the action's `bench.*`),
    `data`, `trainer` and the model options where the config has them, and every `_target_` node against its
    signature."""
    from wantrain.config_schema.model import options_for
    from wantrain.config_schema.targets import check_target, target_nodes

    late = RESOLVED_BY_THE_BENCHMARK.get(action or "", ()) if config_name == "bench" else ()
    values = plain_config(cfg, [f"bench.{key}" for key in late])
    _check_node("", values, SCHEMAS.get(config_name))
    if config_name == "bench" and action is not None:
        _check_node("bench", values.get("bench"), BENCHES.get(action))
    if config_name in TRAINING_GROUPS:
        _check_node("data", values.get("data"), DataOptions)
        _check_node("trainer", values.get("trainer"), TrainerOptions, open_keys=True)
    nodes = list(target_nodes(values))
    for key, node in nodes:  # model nodes (`model`, bench quality's base_model / sr_model) by their options
        _check_node(key, node, options_for(node.get("_target_")), open_keys=True)
    for key, node in nodes:
        check_target(key, node)


def _check_node(key: str, node: Any, schema: type | None, open_keys: bool = False) -> None:
    if schema is not None and isinstance(node, Mapping):
        check_options(key, node, schema, open_keys=open_keys)
