"""The config schema on the real config tree: every experiment and trainer option passes as shipped, and a bad value
anywhere fails in one line that names the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from wantrain.config_schema import OptionError, check_config
from wantrain.config_tree import config_dir, list_experiments

TRAINERS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("overrides", [[f"+experiment={e}"] for e in list_experiments()]
                         + [[f"trainer={t}"] for t in TRAINERS] + [["data=shards", "logger=wandb"], ["data=mixed"]])
def test_the_shipped_configs_pass(compose, tmp_path, overrides: list[str]) -> None:
    check_config(compose(*overrides, root=tmp_path))


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.optimizer.lr=abc"], "model.optimizer.lr='abc': expected a number - learning rate"),
    (["model.sampling.guidance_rescale=1.5"], "model.sampling.guidance_rescale=1.5: out of range, use a value >= 0 "
                                              "and <= 1"),
    (["data.batch_size=0"], "data.batch_size=0: out of range, use a value >= 1"),
    (["data.num_workers=-1"], "data.num_workers=-1: out of range, use a value >= 0"),
    (["data.resolution=[32,x]"], "data.resolution=[32, x]: expected int or a list of int"),
    (["trainer.max_steps=-3"], "trainer.max_steps=-3: out of range, use a value >= -1"),
    (["trainer.precision=bf17"], "trainer.precision='bf17': not allowed (did you mean bf16?)"),
    (["++trainer.strategy=dpp"], "trainer.strategy='dpp': not allowed (did you mean ddp?)"),
    (["+data.batch_sise=3"], "unknown config key data.batch_sise: remove it or fix its spelling (did you mean "
                             "data.batch_size?)"),
    (["+model.unet.chanels=8"], "unknown config key model.unet.chanels: remove it or fix its spelling"),
    (["model.unet._target_=wantrain.nets.unet.NoSuchNet"], "model.unet._target_=wantrain.nets.unet.NoSuchNet cannot "
                                                           "be imported"),
    (["+experiment=sr_tiny", "model.gan.loss=hinj"], "model.gan.loss='hinj': not allowed (did you mean hinge?)"),
    (["+experiment=sr_tiny", "model.degrade.real={prob: 2}"], "model.degrade.real.prob=2: out of range"),
    (["+experiment=sr_tiny", "+model.usm.radius=3"], "unknown config key model.usm.radius"),
    (["init_weights=last"], "init_weights='last': not allowed; use one of ema, raw"),
])
def test_a_bad_value_is_refused_in_one_line(compose, tmp_path, overrides: list[str], message: str) -> None:
    with pytest.raises(OptionError) as err:
        check_config(compose(*overrides, root=tmp_path))
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
