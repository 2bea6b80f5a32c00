"""One command run through Hydra (`@hydra.main`: multirun, launchers, --cfg), its config checked against the schema
first, and the one-line errors a user can fix printed instead of tracebacks."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from wantrain.commands.registry import COMMANDS
from wantrain.config_tree import config_dir


def run_command(name: str, action: str | None, overrides: list[str]) -> None:
    """Run one command through Hydra with argv holding only the overrides while Hydra parses them."""
    import hydra
    from omegaconf import DictConfig
    from omegaconf.errors import MissingMandatoryValue

    from wantrain.config_schema import check_config
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
            check_config(cfg, command.config_name, action)  # types, ranges, unknown keys: before anything is written
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
