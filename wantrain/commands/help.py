"""`python -m wantrain COMMAND --help`: wantrain's own help page, read from the config tree (no torch, no Hydra)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from wantrain.config_tree import config_dir, list_experiments

# Top-level `key: value  # comment` lines of a config file (nested keys are indented and skipped).
KEY_LINE = re.compile(r"^([A-Za-z_]\w*):(?:\s+([^#]*?))?\s*(?:#\s*(.*))?$")
SKIPPED_KEYS = {"defaults", "hydra", "_target_", "_convert_", "_partial_"}
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


def _description(path: Path) -> str:
    """The first sentence of a config file's header comment (up to an example line or a blank comment)."""
    words = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#") or line.startswith("#   ") or not line[1:].strip():
            break
        words.append(line[1:].strip())
    text = " ".join(words)
    return re.split(r"(?<=\.)\s+(?=[A-Z`])", text, maxsplit=1)[0].rstrip(":")


def _keys(path: Path) -> list[tuple[str, str, str]]:
    """(key, value, comment) of a config file's top-level keys; a key's comment is its inline one, else the
    comment lines just above it."""
    rows, above = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            above.append(line[1:].strip())
            continue
        match = KEY_LINE.match(line)
        if match and match.group(1) not in SKIPPED_KEYS:
            key, value, comment = match.group(1), (match.group(2) or "").strip(), (match.group(3) or "").strip()
            rows.append((key, value, comment or " ".join(a for a in above if a)))
        if line.strip():
            above = []
    return rows


def _defaults(config: Path) -> list[tuple[str, str | None]]:
    """(group, default option) pairs of a config file's defaults list."""
    groups, inside = [], False
    for line in config.read_text().splitlines():
        if line.startswith("defaults:"):
            inside = True
            continue
        if inside:
            match = re.match(r"^\s+-\s+([\w/]+):\s*([\w.]+)", line)
            if match:
                option = match.group(2)
                groups.append((match.group(1), None if option == "null" else option))
            elif line and not line.startswith((" ", "#")):
                break
    return groups


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


def group_lines(config_name: str) -> list[str]:
    """The config groups of a command's config, options listed, the default marked with *."""
    rows = []
    for group, default in _defaults(config_dir() / f"{config_name}.yaml"):
        if group in ("hydra", "bench"):
            continue
        options = [f"*{o}" if o == default else o for o in _options(group)]
        rows.append((group, "  ".join(options) + ("" if default else "  (none by default)")))
    if any(group == "hydra" for group, _ in _defaults(config_dir() / f"{config_name}.yaml")):
        rows.append(("hydra/launcher", "  ".join(_options("hydra/launcher")) + "  (with -m: one SLURM job per point)"))
    return _table(rows)


def key_lines(config_name: str, prefix: str = "", path: Path | None = None) -> list[str]:
    """A command's top-level keys with their defaults and comments."""
    path = path or config_dir() / f"{config_name}.yaml"
    rows = []
    for key, value, comment in _keys(path):
        shown = value if value else "{...}"
        rows.append((f"{prefix}{key}={_clip(shown, 28)}", comment))
    return _table(rows)


def group_key_lines(config_name: str) -> list[str]:
    """`data.KEY`, `model.KEY`, `trainer.KEY`, ... lines: what each group's keys are and where they are set."""
    rows = []
    for group, default in _defaults(config_dir() / f"{config_name}.yaml"):
        if group == "trainer":
            rows.append(("trainer.KEY=VALUE", "any pytorch_lightning.Trainer argument, e.g. trainer.max_steps=500 "
                                              "trainer.val_check_interval=50 (conf/trainer/)"))
        elif group in GROUP_KEYS and default:
            keys = " ".join(k for k, _, _ in _keys(config_dir() / group / f"{default}.yaml"))
            what = GROUP_KEYS[group] if group in ("logger", "callbacks", "paths") else f"{GROUP_KEYS[group]}: {keys}"
            rows.append((f"{group}.KEY=VALUE", f"{what} (conf/{group}/{default}.yaml)"))
    return _table(rows)


def usage_line(name: str, actions: tuple[str, ...], config_name: str) -> str:
    """`usage: python -m wantrain NAME ...` for one command."""
    action = f" {{{','.join(actions)}}}" if actions else ""
    groups = " [GROUP=OPTION ...]" if any(g != "hydra" for g, _ in _defaults(config_dir() / f"{config_name}.yaml")) \
        else ""
    experiment = " [+experiment=NAME]" if config_name == "config" else ""
    return f"usage: python -m wantrain {name}{action}{groups} [KEY=VALUE ...]{experiment}"


def command_help(name: str, summary: str, config_name: str, actions: tuple[str, ...] = (),
                 action: str | None = None) -> str:
    """The help page of one command (and of one action of `bench`)."""
    lines = [usage_line(name, actions, config_name), "", summary]
    if actions and action is None:
        lines += ["", "actions:"]
        if name == "bench":
            lines += _table([(a, _description(config_dir() / "bench" / f"{a}.yaml")) for a in actions])
        else:
            lines += [f"  {a}" for a in actions]
    groups = group_lines(config_name)
    if groups:
        lines += ["", "config groups (GROUP=OPTION; * marks the default; files in conf/GROUP/):", *groups]
    if config_name == "config":
        lines += ["", "experiments (+experiment=NAME, applied on top of everything; conf/experiment/NAME.yaml):"]
        lines += _table([(e, _description(config_dir() / "experiment" / f"{e}.yaml")) for e in list_experiments()])
    lines += ["", f"keys (KEY=VALUE; defaults from conf/{config_name}.yaml):", *key_lines(config_name)]
    lines += group_key_lines(config_name)
    if name == "bench" and action:
        lines += ["", f"bench.KEY=VALUE (conf/bench/{action}.yaml):",
                  *key_lines(config_name, "bench.", config_dir() / "bench" / f"{action}.yaml")]
    elif name == "bench":
        lines += ["", "`python -m wantrain bench ACTION --help` lists that benchmark's bench.KEY options."]
    lines += ["", "examples:", *(f"  {e}" for e in EXAMPLES.get(name, ()))]
    lines += ["", "Hydra's flags work as usual: --cfg job [--resolve] prints the composed config and exits; -m runs a "
              "sweep;", "--hydra-help shows Hydra's own help.",
              f"More in {DOCS.get(name, 'README.md (Commands)')}."]
    return "\n".join(lines)
