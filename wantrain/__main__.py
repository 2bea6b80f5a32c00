"""`python -m wantrain COMMAND [ACTION] [hydra overrides]`: take the command off argv, then hand over to Hydra."""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NamedTuple

from wantrain.config_tree import config_dir, list_experiments


class Command(NamedTuple):
    """One CLI command: its module, its top-level config, and the actions it takes."""

    summary: str
    config_name: str = "config"
    actions: tuple[str, ...] = ()
    action_group: str | None = None  # the action selects this config group (`bench data` == `bench=data`)


COMMANDS: dict[str, Command] = {
    "fit": Command("train a stage (default: the video diffusion model on the synthetic set)"),
    "validate": Command("run the validation loop of a checkpoint (ckpt_path=...)"),
    "test": Command("evaluate a checkpoint on a shard set and write metrics JSON", "test"),
    "sample": Command("generate an mp4 from an image and a prompt", "sample"),
    "encode": Command("cache frozen T5/DiT embeddings (+ VAE latents in latent space) in shards (out=DIR)", "encode"),
    "bench": Command("benchmarks: data | unet | upsampler | step | plan | quality", "bench",
                     ("data", "unet", "upsampler", "step", "plan", "quality"), "bench"),
    "shards": Command("write shards: synthetic | from-folder", "shards", ("synthetic", "from-folder")),
}


class UsageError(Exception):
    """A bad command line; the message is one line and the exit code is 2."""


def usage() -> str:
    """The text printed by `python -m wantrain` and `--help`."""
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m wantrain COMMAND [ACTION] [key=value ...] [+experiment=NAME]", "", "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "experiments (+experiment=NAME):"]
    lines += [f"  {name}" for name in list_experiments()] or ["  (none)"]
    lines += ["", "Overrides are Hydra's: model.optimizer.lr=3e-4 trainer=ddp logger=csv data.batch_size=8.",
              "`python -m wantrain COMMAND --help` shows a command's groups, keys and examples;",
              "`python -m wantrain fit --cfg job` prints the composed config; `--help` shows this text."]
    return "\n".join(lines)


HELP_FLAGS = ("-h", "--help")


def command_help(argv: Sequence[str]) -> str | None:
    """The help page of `COMMAND [ACTION] ... --help`, or None when argv asks for no help."""
    if not argv or argv[0] not in COMMANDS or not any(a in HELP_FLAGS for a in argv[1:]):
        return None
    from wantrain.commands.help import command_help as render

    command = COMMANDS[argv[0]]
    action = argv[1] if len(argv) > 1 and argv[1] in command.actions else None
    return render(argv[0], command.summary, command.config_name, command.actions, action)


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


def run_command(name: str, action: str | None, overrides: list[str]) -> None:
    """Run one command through Hydra with argv holding only the overrides while Hydra parses them."""
    import hydra
    from omegaconf import DictConfig
    from omegaconf.errors import MissingMandatoryValue

    from wantrain.config_tree import register_resolvers
    from wantrain.errors import WantrainError

    command = COMMANDS[name]
    module = importlib.import_module(f"wantrain.commands.{name.replace('-', '_')}")
    full_argv = list(sys.argv)

    @hydra.main(config_path=str(config_dir()), config_name=command.config_name, version_base="1.3")
    def task(cfg: DictConfig) -> None:
        # A multirun job on SLURM (submitit) runs this function in a fresh process that never ran main().
        register_resolvers()
        # Lightning relaunches DDP ranks from sys.argv: give it back the full command line.
        sys.argv[:] = full_argv
        try:
            module.run(cfg, action)
        except MissingMandatoryValue as err:
            if os.environ.get("WANTRAIN_TRACEBACK"):
                raise
            key = getattr(err, "full_key", "") or str(err).splitlines()[0]
            print(f"wantrain: error: {key} is not set (it is ??? in the config); pass {key}=VALUE", file=sys.stderr)
            raise SystemExit(2) from None
        except (WantrainError, FileNotFoundError) as err:
            if os.environ.get("WANTRAIN_TRACEBACK"):
                raise
            print(f"wantrain: error: {err}", file=sys.stderr)
            raise SystemExit(1) from None

    sys.argv[:] = [full_argv[0], *overrides]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        task()
    finally:
        sys.argv[:] = full_argv
        # Hydra gave the root logger a console handler bound to this launch's sys.stdout: put the caller's logging
        # back, so an in-process caller (a test, a notebook) is not left with a handler on a stream it closes
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m wantrain` and the `wantrain` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    page = command_help(argv)
    if page is not None:
        print(page)
        return 0
    from wantrain.commands.launch import prepare_launch
    from wantrain.commands.quiet import quiet_third_party

    quiet_third_party()
    prepare_launch()
    try:
        name, action, overrides = split_argv(argv)
        check_experiments(overrides)
        if name == "bench" and action == "plan":
            overrides = plan_overrides(overrides)
        if COMMANDS[name].action_group:
            overrides = [f"{COMMANDS[name].action_group}={action}", *overrides]
        if COMMANDS[name].config_name == "config":
            overrides = trainer_overrides(overrides)
        check_overrides(COMMANDS[name].config_name, overrides)
    except UsageError as err:
        print(f"wantrain: error: {err}", file=sys.stderr)
        return 2
    sys.argv[1:] = argv
    run_command(name, action, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
