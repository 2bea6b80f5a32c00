"""The CLI's commands: what each one is, its top-level config and its actions; the usage text and help pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from wantrain.config_tree import list_experiments


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
    "bench": Command("benchmarks: data | unet | dit | upsampler | step | plan | quality", "bench",
                     ("data", "unet", "dit", "upsampler", "step", "plan", "quality"), "bench"),
    "shards": Command("write shards: synthetic | from-folder", "shards", ("synthetic", "from-folder")),
}


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
