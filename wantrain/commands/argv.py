"""The command line before Hydra sees it: `COMMAND [ACTION] overrides...` split, Trainer keys checked, `bench plan`'s
training overrides packed, unknown experiments and bad overrides refused in one line (exit 2)."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Sequence

from wantrain.commands.registry import COMMANDS
from wantrain.config_tree import config_dir, list_experiments


class UsageError(Exception):
    """A bad command line; the message is one line and the exit code is 2."""


TRAINER_KEY = re.compile(r"^(\+{0,2})trainer\.([A-Za-z_]\w*)=(.*)$", re.DOTALL)


def trainer_overrides(overrides: Sequence[str]) -> list[str]:
    """`trainer.KEY=VALUE` for any Lightning Trainer argument, also one the trainer config does not set (it
    becomes `++trainer.KEY=VALUE`); a KEY that is no Trainer argument fails in one line (typos are caught)."""
    out, known = [], None
    for item in overrides:
        match = TRAINER_KEY.match(item)
        if not match:
            out.append(item)
            continue
        if known is None:
            import pytorch_lightning as pl

            known = [n for n in inspect.signature(pl.Trainer.__init__).parameters if n != "self"]
        plus, key, value = match.groups()
        if key not in known and key != "_target_":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean trainer.{close[0]}?)" if close else ""
            raise UsageError(f"unknown Trainer argument trainer.{key}{hint}; trainer.* takes the arguments of "
                             "pytorch_lightning.Trainer")
        out.append(f"++trainer.{key}={value}" if not plus else item)
    return out


def split_argv(argv: Sequence[str]) -> tuple[str, str | None, list[str]]:
    """Split `COMMAND [ACTION] overrides...` into its three parts, or raise UsageError."""
    if not argv:
        raise UsageError("no command given")
    name, rest = argv[0], list(argv[1:])
    if name not in COMMANDS:
        raise UsageError(f"unknown command '{name}'; choose one of: {', '.join(COMMANDS)}")
    command = COMMANDS[name]
    action = None
    if command.actions:
        if not rest or rest[0] not in command.actions:
            got = f"'{rest[0]}'" if rest else "nothing"
            raise UsageError(f"'{name}' needs an action ({' | '.join(command.actions)}), got {got}")
        action = rest.pop(0)
    return name, action, rest


BENCH_KEYS = ("bench", "out_dir", "run_name", "run_dir", "seed", "hydra", "paths")


# Hydra's flags that take the next argument as their value (`--cfg job`); --info's value is optional
VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
               "--experimental-rerun")
INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def plan_overrides(overrides: Sequence[str]) -> list[str]:
    """`bench plan` plans a training config: its training overrides (+experiment=NAME, trainer=fsdp,
    data.batch_size=8) travel as one `bench.overrides=[...]`; bench.* overrides stay, and Hydra's flags (with their
    values) go last, after every override."""
    flags: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(overrides):
        item, value = overrides[i], overrides[i + 1] if i + 1 < len(overrides) else None
        if not item.startswith("-"):
            rest.append(item)
        else:
            flags.append(item)
            if value is not None and (item in VALUE_FLAGS or (item in ("--info", "-i") and value in INFO_VALUES)):
                flags.append(value)
                i += 1
        i += 1
    own = [o for o in rest if re.split(r"[.=]", o.lstrip("+~"), maxsplit=1)[0] in BENCH_KEYS]
    train = [o for o in rest if o not in own]
    if not train:
        return [*own, *flags]
    quoted = ",".join("'" + o.replace("\\", "\\\\").replace("'", "\\'") + "'" for o in train)
    return [*own, f"bench.overrides=[{quoted}]", *flags]


def check_experiments(overrides: Sequence[str]) -> None:
    """Fail early, in one line, on `+experiment=NAME` where NAME has no file in conf/experiment/."""
    known = list_experiments()
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == "experiment" and value and value not in known:
            raise UsageError(f"unknown experiment '{value}'; known: {', '.join(known)} (files in conf/experiment/)")


def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose once with the compose API so a bad override fails in one line, before Hydra runs."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if any(item.startswith("-") for item in overrides):
        return  # Hydra flags (--cfg, --multirun, ...) and sweeps are Hydra's to parse
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        cause = err.__cause__
        if cause is not None and str(cause) not in message:
            message += f" ({str(cause).splitlines()[0]})"
        if isinstance(err, OverrideParseException) and any("{" in item for item in overrides):
            message += "; quote values with braces for Hydra: \"data.train_shards='/data/{00000..00099}.tar'\""
        raise UsageError(f"bad override: {message}") from err
