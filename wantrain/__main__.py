"""`python -m wantrain`: the CLI lives in `wantrain.commands` (registry, argv, hydra_task, cli, help)."""

from __future__ import annotations

import sys

from wantrain.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
