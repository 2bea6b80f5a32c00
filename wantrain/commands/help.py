"""`python -m wantrain COMMAND --help`: wantrain's own help page. The keys, their defaults and docs come from the
config schema (wantrain/config_schema/); the groups, their options and the experiments from the config tree
(file listings, the defaults lists read with OmegaConf, the experiments' header comments). No torch, no Hydra."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wantrain.config_schema import schema_of
from wantrain.config_schema.data import DataOptions
from wantrain.config_tree import config_dir, list_experiments
from wantrain.schema import doc_of, key_of

WIDTH = 118

EXAMPLES: dict[str, tuple[str, ...]] = {
    "fit": (
        "python -m wantrain fit                                   # = +experiment=i2v_tiny: synthetic data, tiny model",
        "python -m wantrain fit trainer.max_steps=500 data.batch_size=8 model.optimizer.lr=3e-4",
        "python -m wantrain fit +experiment=sr_tiny trainer.val_check_interval=50",
        "python -m wantrain fit run_name=first                    # ckpt_path=auto resumes run 'first'",
        "python -m wantrain fit +experiment=i2v_tiny_lora init_from=runs/first run_name=lora   # start from weights",
        "python -m wantrain fit debug=fast                        # one batch through everything",
        "python -m wantrain fit -m seed=1,2,3                     # a sweep: one run per point",
    ),
    "validate": ("python -m wantrain validate ckpt_path=runs/first/checkpoints/last.ckpt",),
    "test": ("python -m wantrain test ckpt=runs/first \"data.test_shards='/data/test/{00000..00003}.tar'\"",),
    "sample": (
        "python -m wantrain sample base_ckpt=runs/base sr_ckpts=[runs/sr1] image=frame.png prompt=\"a red ball\"",
        "python -m wantrain sample base_ckpt=runs/base prompts=prompts.csv batch_size=8",
        "python -m wantrain sample base_ckpt=runs/base sr_ckpts=[runs/sr1] export=exports/v1",
        "python -m wantrain sample base_ckpt=runs/base lora=lora/pytorch_lora_weights.safetensors image=f.png prompt=x",
    ),
    "encode": ("python -m wantrain encode out=data/encoded \"shards='/data/webvid/{00000..00099}.tar'\"",),
    "bench": (
        "python -m wantrain bench data bench.workers=[1,2,4]",
        "python -m wantrain bench unet bench.device=cuda bench.batch_size=8",
    ),
    "shards": (
        "python -m wantrain shards synthetic out=data/synthetic num_clips=64",
        "python -m wantrain shards from-folder in=my_videos out=data/mine captions=captions.csv",
    ),
}

DOCS: dict[str, str] = {  # where each command is documented (docs/ by topic)
    "fit": "docs/training.md, docs/fine-tuning.md, docs/configuration.md, docs/scaling.md (GPUs, SLURM)",
    "validate": "docs/training.md, docs/configuration.md",
    "test": "docs/sampling.md (`test` options)",
    "sample": "docs/sampling.md (`sample` options)",
    "encode": "docs/data.md (Caching the frozen encoders)",
    "bench": "docs/benchmarks.md",
    "shards": "docs/data.md (Your own data)",
}

GROUP_KEYS: dict[str, str] = {
    "data": "the data module",
    "model": "the LightningModule",
    "logger": "loggers by name, e.g. logger.wandb.project=NAME",
    "callbacks": "callbacks by name, e.g. callbacks.model_checkpoint.every_n_train_steps=500",
    "paths": "root_dir, data_dir, runs_dir, weights_dir",
}
NOT_KEYS = ("defaults", "hydra", "_target_", "_convert_", "_partial_", "_recursive_")


def header(path: Path) -> str:
    """A config file's header comment as one line: its `#` lines up to an indented example or a blank comment."""
    words = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#") or line.startswith("#   ") or not line[1:].strip():
            break
        words.append(line[1:].strip())
    return " ".join(words)


def first_sentence(text: str) -> str:
    """Up to the first full stop that a capital letter or a backquote follows."""
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word.endswith(".") and (words[i + 1][0].isupper() or words[i + 1][0] == "`"):
            return " ".join(words[: i + 1])
    return text.rstrip(":")


def defaults_list(config_name: str) -> list[tuple[str, str | None]]:
    """(group, default option) pairs of a config file's defaults list (`_self_` and package entries left out)."""
    entries = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{config_name}.yaml")).get("defaults") or []
    return [(str(group), None if option is None else str(option)) for entry in entries if isinstance(entry, dict)
            for group, option in entry.items()]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[tuple[str, str]], indent: int = 2) -> list[str]:
    """Two columns; the second wraps under itself."""
    width = max((len(a) for a, _ in rows), default=0)
    lines = []
    for a, b in rows:
        head = f"{' ' * indent}{a:<{width}}  "
        lines += textwrap.wrap(b, WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                               break_on_hyphens=False) or [head.rstrip()]
    return lines


def shown(value: Any) -> str:
    """A default as it reads in YAML and on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict) or dataclasses.is_dataclass(value):
        return "{...}"
    return str(value) if value != "" else "''"


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else "???"


def field_rows(schema: type, prefix: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(`KEY=default`, doc) of a schema's fields, a nested schema's fields as `KEY.SUBKEY` below its own line."""
    rows = []
    for field in dataclasses.fields(schema):
        key = key_of(field)
        if key in skip:
            continue
        rows.append((f"{prefix}{key}={_clip(shown(_default(field)), 28)}", doc_of(field, resolve=False)))
        nested = field.default_factory
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            rows += field_rows(nested, f"{prefix}{key}.")
    return rows


def group_lines(config_name: str) -> list[str]:
    """The config groups of a command's config, options listed, the default marked with *."""
    rows = []
    defaults = defaults_list(config_name)
    for group, default in defaults:
        if group in ("hydra", "bench"):
            continue
        options = [f"*{o}" if o == default else o for o in _options(group)]
        rows.append((group, "  ".join(options) + ("" if default else "  (none by default)")))
    if any(group == "hydra" for group, _ in defaults):
        rows.append(("hydra/launcher", "  ".join(_options("hydra/launcher")) + "  (with -m: one SLURM job per point)"))
    return _table(rows)


def key_lines(config_name: str) -> list[str]:
    """A command's own keys (its schema's fields, groups left out) with their defaults and docs."""
    schema = schema_of(config_name)
    groups = tuple(group for group, _ in defaults_list(config_name))
    return _table(field_rows(schema, skip=(*groups, "experiment"))) if schema else []


def _file_keys(path: Path) -> list[str]:
    return [str(k) for k in OmegaConf.to_container(OmegaConf.load(path)) if k not in NOT_KEYS]


def group_key_lines(config_name: str) -> list[str]:
    """`data.KEY`, `model.KEY`, `trainer.KEY`, ... lines: what each group's keys are and where they are set (the
    data keys from its schema; the model keys from the default model's file, as the model schema imports torch)."""
    rows = []
    for group, default in defaults_list(config_name):
        if group == "trainer":
            rows.append(("trainer.KEY=VALUE", "any pytorch_lightning.Trainer argument, e.g. trainer.max_steps=500 "
                                              "trainer.val_check_interval=50 (conf/trainer/)"))
        elif group in GROUP_KEYS and default:
            if group == "data":
                keys = " ".join(key_of(f) for f in dataclasses.fields(DataOptions))
            else:
                keys = " ".join(_file_keys(config_dir() / group / f"{default}.yaml"))
            what = GROUP_KEYS[group] if group in ("logger", "callbacks", "paths") else f"{GROUP_KEYS[group]}: {keys}"
            rows.append((f"{group}.KEY=VALUE", f"{what} (conf/{group}/{default}.yaml)"))
    return _table(rows)


def usage_line(name: str, actions: tuple[str, ...], config_name: str) -> str:
    """`usage: python -m wantrain NAME ...` for one command."""
    action = f" {{{','.join(actions)}}}" if actions else ""
    groups = " [GROUP=OPTION ...]" if any(g != "hydra" for g, _ in defaults_list(config_name)) else ""
    experiment = " [+experiment=NAME]" if config_name == "config" else ""
    return f"usage: python -m wantrain {name}{action}{groups} [KEY=VALUE ...]{experiment}"


def action_summary(config_name: str, action: str) -> str:
    """One action's line: its schema's docstring, less the leading "`bench ACTION`: "."""
    schema = schema_of(config_name, action)
    text = (schema.__doc__ or "").strip() if schema else ""
    return text.split(": ", 1)[1] if text.startswith("`") and ": " in text else text


def command_help(name: str, summary: str, config_name: str, actions: tuple[str, ...] = (),
                 action: str | None = None) -> str:
    """The help page of one command (and of one action of `bench`)."""
    lines = [usage_line(name, actions, config_name), "", summary]
    if actions and action is None:
        lines += ["", "actions:"]
        if name == "bench":
            lines += _table([(a, action_summary(config_name, a)) for a in actions])
        else:
            lines += [f"  {a}" for a in actions]
    groups = group_lines(config_name)
    if groups:
        lines += ["", "config groups (GROUP=OPTION; * marks the default; files in conf/GROUP/):", *groups]
    if config_name == "config":
        lines += ["", "experiments (+experiment=NAME, applied on top of everything; conf/experiment/NAME.yaml):"]
        lines += _table([(e, first_sentence(header(config_dir() / "experiment" / f"{e}.yaml")))
                         for e in list_experiments()])
    lines += ["", f"keys (KEY=VALUE; defaults as in conf/{config_name}.yaml):", *key_lines(config_name)]
    lines += group_key_lines(config_name)
    bench = schema_of(config_name, action) if name == "bench" and action else None
    if bench is not None:
        lines += ["", f"bench.KEY=VALUE (conf/bench/{action}.yaml):",
                  *textwrap.wrap(action_summary(config_name, action), WIDTH, initial_indent="  ",
                                 subsequent_indent="  "), *_table(field_rows(bench, "bench."))]
    elif name == "bench":
        lines += ["", "`python -m wantrain bench ACTION --help` lists that benchmark's bench.KEY options."]
    lines += ["", "examples:", *(f"  {e}" for e in EXAMPLES.get(name, ()))]
    lines += ["", "Hydra's flags work as usual: --cfg job [--resolve] prints the composed config and exits; -m runs a "
              "sweep;", "--hydra-help shows Hydra's own help.",
              f"More in {DOCS.get(name, 'README.md (Commands)')}."]
    return "\n".join(lines)
