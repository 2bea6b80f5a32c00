"""`run_main`: the CLI in this process, importable by any test (`from in_process import run_main`): a bare
`from conftest import` picks whichever folder's conftest was imported last."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_launches = iter(range(10**6))


def run_main(args: list[str], cwd: Path) -> int:
    """The real entry point (`wantrain.__main__.main`) in this process, from `cwd`: no interpreter start-up,
    so the many sample/test calls stay cheap. Returns the exit code; the session's logging is restored."""
    import logging

    from wantrain.__main__ import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["wantrain", *args])
        mp.setenv("WANTRAIN_RUN_STAMP", f"launch{next(_launches)}")
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
            mp.delenv(key, raising=False)
        try:
            return main(args)
        except SystemExit as exit_:
            return int(exit_.code or 0)
        finally:  # Hydra configured logging for the job: give the test session its own back
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
