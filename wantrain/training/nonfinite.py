"""Skipping optimizer steps whose gradients are NaN/inf, and stopping after too many in a row.

The check runs on the gradients just before the optimizer step (after backward, accumulation and DDP's gradient
all-reduce), so a NaN/inf loss on any rank or micro-batch is caught, and the decision is reduced over ranks so every
rank skips the same steps (FSDP shards gradients, so a local check alone would not agree). A skipped step sets the
gradients to None: torch optimizers then leave the weights, moments and step counts untouched. The step still counts
toward `trainer.max_steps` (like an AMP GradScaler skip).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from wantrain.errors import WantrainError


class NonFiniteError(WantrainError):
    """Too many consecutive optimizer steps had non-finite gradients."""


def grads_finite(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """A 0-dim bool tensor: every existing gradient in `params` is finite (True when there are none)."""
    # sharded (DTensor) gradients: this rank's shard; the decision is reduced over ranks afterwards
    grads = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(True)
    norms = torch._foreach_norm(grads)  # one fused pass; NaN/inf anywhere makes its norm non-finite
    return torch.isfinite(torch.stack([n.float() for n in norms]).sum())


class NonFiniteGuard:
    """Counts skipped steps (`total`, `consecutive`) and raises NonFiniteError after `max_consecutive` in a row."""

    def __init__(self, max_consecutive: int = 10) -> None:
        if int(max_consecutive) < 1:
            raise WantrainError(f"model.max_nonfinite_steps must be >= 1, got {max_consecutive}")
        self.max_consecutive = int(max_consecutive)
        self.total = 0
        self.consecutive = 0

    def check(self, params: list[torch.nn.Parameter], strategy: Any, step: int, what: str = "") -> bool:
        """True if the step may proceed; else the gradients are dropped, the step counted, and maybe raised."""
        local = bool(grads_finite(params))
        ok = strategy.reduce_boolean_decision(local, all=True) if strategy is not None else local
        if ok:
            self.consecutive = 0
            return True
        for p in params:
            p.grad = None
        self.total += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"{self.consecutive} optimizer steps in a row had NaN/inf {what}gradients (last at step {step}); "
                "their updates were skipped, so the weights and the last checkpoint are the last good ones. "
                "Lower model.optimizer.lr, raise the warm-up, check the data, or train in trainer.precision=32-true; "
                f"model.max_nonfinite_steps={self.max_consecutive} sets this limit"
            )
        return False

    def state_dict(self) -> dict[str, int]:
        """Counters, so `train/nonfinite_steps` carries over a resume."""
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore counters saved by `state_dict`."""
        self.total = int(state.get("total", 0))
        self.consecutive = int(state.get("consecutive", 0))


class NonFiniteGuards:
    """One `NonFiniteGuard` per optimised network, with the checkpoint entry and the metrics they are saved and
    logged as: `{"": "train/nonfinite_steps"}` for one network (its counters sit at the top of
    `checkpoint["nonfinite_steps"]`), or several names (each network's counters under its name)."""

    def __init__(self, max_consecutive: int, metrics: dict[str, str]) -> None:
        self.metrics = dict(metrics)
        self.guards = {name: NonFiniteGuard(max_consecutive) for name in self.metrics}

    def __getitem__(self, name: str) -> NonFiniteGuard:
        return self.guards[name]

    def state_dict(self) -> dict[str, Any]:
        """The counters as `checkpoint["nonfinite_steps"]` holds them."""
        if list(self.guards) == [""]:
            return self.guards[""].state_dict()
        return {name: guard.state_dict() for name, guard in self.guards.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters saved by `state_dict` (missing ones start at 0: checkpoints from before the guard)."""
        for name, guard in self.guards.items():
            guard.load_state_dict(state if name == "" else state.get(name, {}))

    def totals(self) -> dict[str, float]:
        """Each guard's skipped-step total under its metric name."""
        return {metric: float(self.guards[name].total) for name, metric in self.metrics.items()}
