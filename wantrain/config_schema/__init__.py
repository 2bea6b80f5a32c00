"""The typed config schema: checks a composed config before anything is built or written, so a wrong type, an
out-of-range value or an unknown key fails in one line naming the key, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wantrain.config_schema.data import DataOptions
from wantrain.config_schema.model import options_for
from wantrain.config_schema.run import RunOptions, TrainerOptions
from wantrain.config_schema.targets import check_target, target_nodes
from wantrain.schema import OptionError, check_options

__all__ = ["OptionError", "check_config", "plain_config"]


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values, interpolations resolved (mandatory `???` values stay as they are)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "the config"
        raise OptionError(f"{key}: {str(err).splitlines()[0]}") from None


def check_config(cfg: DictConfig, config_name: str = "config") -> None:
    """Check a composed config: the main config's own keys, `data`, `trainer` and the model options by schema (fit,
    validate), and every `_target_` node against its signature (all commands)."""
    values = plain_config(cfg)
    if config_name == "config":
        check_options("", values, RunOptions)
        _check_node("data", values.get("data"), DataOptions)
        _check_node("trainer", values.get("trainer"), TrainerOptions, open_keys=True)
        model = values.get("model")
        if isinstance(model, Mapping):
            _check_node("model", model, options_for(model.get("_target_")), open_keys=True)
    for key, node in target_nodes(values):
        check_target(key, node)


def _check_node(key: str, node: Any, schema: type | None, open_keys: bool = False) -> None:
    if schema is not None and isinstance(node, Mapping):
        check_options(key, node, schema, open_keys=open_keys)
