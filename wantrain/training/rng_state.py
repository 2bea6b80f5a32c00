"""RNGStateCheckpoint: every rank's python/numpy/torch(/cuda) RNG state in checkpoints, restored on resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from wantrain.data.dataset import gather_states, make_seed
from wantrain.ranks import data_rank

KEY = "wantrain_rng_states"


def collect_rng_states() -> dict[str, Any]:
    """This process's global RNG states as plain containers and tensors (loadable with weights_only=True)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `collect_rng_states` returned."""
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class RNGStateCheckpoint(pl.Callback):
    """Saves each rank's global RNG states (noise, timesteps, condition dropout, dropout layers draw from them)
    and restores them just before the first training batch after a resume, so a resumed run draws the same
    random numbers as an uninterrupted one. Lightning itself does not save RNG states.

    Every rank is seeded with the same `seed`; with `distinct_ranks`, a fresh multi-process run reseeds ranks
    > 0 at the start of training (after the models are built alike), so ranks draw different noise and
    timesteps. Rank 0 keeps the stream of a single-process run.
    """

    def __init__(self, distinct_ranks: bool = True) -> None:
        self.distinct_ranks = distinct_ranks
        self._pending: dict[str, Any] | None = None
        self._resuming = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # a collective under DDP: Lightning builds the checkpoint on every rank
        own = {**collect_rng_states(), "data_rank": data_rank(trainer)[0]}
        checkpoint[KEY] = gather_states(own, trainer.world_size)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # one stream per data rank (a sequence-parallel group shares one): restored when the run has as many
        states = checkpoint.get(KEY) or []
        streams = {int(s.get("data_rank", i)): s for i, s in enumerate(states)}  # a group's ranks hold the same
        rank, size = data_rank(trainer)
        self._pending = streams.get(rank) if len(streams) == size else None
        self._resuming = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank = data_rank(trainer)[0]  # the ranks of a sequence-parallel group draw the same noise and timesteps
        if self.distinct_ranks and not self._resuming and rank > 0:
            seed = make_seed(torch.initial_seed(), rank)
            random.seed(seed)
            np.random.seed(seed % 2 ** 32)
            torch.manual_seed(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # not at load time: setting up loaders and the sanity check may still draw numbers after it
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
