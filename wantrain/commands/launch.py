"""What every launch needs before Hydra composes: the config's resolvers and a run stamp shared by all ranks."""

from __future__ import annotations

import os
import time

from wantrain.config_tree import RUN_STAMP_ENV, register_resolvers


def prepare_launch() -> None:
    """Fix the run stamp once per launch; DDP ranks relaunched by Lightning inherit it from the environment."""
    register_resolvers()
    os.environ.setdefault(RUN_STAMP_ENV, time.strftime("%Y-%m-%d_%H-%M-%S"))
