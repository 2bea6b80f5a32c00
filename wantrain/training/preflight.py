"""The preflight protocol: checks a run's parts make on each other before anything is written or ranks spawn.

`commands/preflight.py::prepare_run` calls each part's `preflight` once, cheapest first: the data module's right after
it is built (its shards), the LightningModule's once the Trainer exists (resolution, buckets, strategy). A module built
and fit from Python without the CLI runs the same checks from its `setup()` (`PreflightOnce.preflight_unless_done`),
so the errors are the same one-line `WantrainError`s either way, and a CLI run does not check twice.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl


@runtime_checkable
class Preflight(Protocol):
    """A part of a run (a data module, a LightningModule) that checks it can run with the others."""

    def preflight(self, datamodule: Any = None, trainer: pl.Trainer | None = None) -> None:
        """Raise a one-line WantrainError when this part cannot run with `datamodule` under `trainer` (a data module
        checks itself; None: not built yet)."""


def run_preflight(part: Any, datamodule: Any = None, trainer: pl.Trainer | None = None) -> None:
    """`part.preflight(datamodule, trainer)` when the part implements the protocol (a user's data module may not)."""
    if isinstance(part, Preflight):
        part.preflight(datamodule, trainer)


class PreflightOnce:
    """Mixin for LightningModules: `preflight` runs `check_run` and remembers for which data module, Trainer and
    `preflight_scope()`; `setup()` calls `preflight_unless_done`, which checks again only when one of them changed."""

    _preflighted: tuple[int, int, Hashable] | None = None

    def check_run(self, datamodule: Any, trainer: pl.Trainer | None) -> None:
        """The module's checks (one-line WantrainErrors); subclasses implement it."""
        raise NotImplementedError

    def preflight_scope(self) -> Hashable:
        """What the module has loaded since that its checks depend on (e.g. the VAE); None: nothing."""
        return None

    def _preflight_key(self, datamodule: Any, trainer: pl.Trainer | None) -> tuple[int, int, Hashable]:
        return id(datamodule), id(trainer), self.preflight_scope()

    def preflight(self, datamodule: Any = None, trainer: pl.Trainer | None = None) -> None:
        """Check the module against `datamodule` and `trainer`, and remember that it passed."""
        self.check_run(datamodule, trainer)
        self._preflighted = self._preflight_key(datamodule, trainer)

    def preflight_unless_done(self, datamodule: Any, trainer: pl.Trainer | None) -> None:
        """`preflight` unless it already passed for this data module, Trainer and scope (from `prepare_run`)."""
        if self._preflighted != self._preflight_key(datamodule, trainer):
            self.preflight(datamodule, trainer)
