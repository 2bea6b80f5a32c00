"""`python -m wantrain COMMAND [ACTION] [hydra overrides]`: help, then the command line checked, then Hydra."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from wantrain.commands.argv import (
    UsageError,
    check_experiments,
    check_overrides,
    plan_overrides,
    split_argv,
    trainer_overrides,
)
from wantrain.commands.hydra_task import run_command
from wantrain.commands.registry import COMMANDS, command_help, usage


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
