"""Fixtures for the data tests: a small synthetic shard set built once per session."""

from __future__ import annotations

import pytest
import torch

from wantrain.data.synthetic import write_synthetic_dataset

SMALL = dict(num_clips=16, num_val_clips=5, shard_size=4, num_frames=12, size=48, fps=8, gop=4, seed=3)


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    """4 train shards x 4 clips + 2 val shards (4 + 1 clips): 12 frames of 48x48 at 8 fps."""
    out = tmp_path_factory.mktemp("synthetic") / "set"
    manifest = write_synthetic_dataset(out, **SMALL)
    return out, manifest


@pytest.fixture(scope="session")
def small_args():
    """The arguments small_set was written with."""
    return dict(SMALL)


def _check_batch(batch, b, t=8, h=32, w=32):
    """The batch contract."""
    assert batch["video"].shape == (b, 3, t, h, w) and batch["video"].dtype == torch.float32
    assert batch["image"].shape == (b, 3, h, w) and batch["image"].dtype == torch.float32
    assert -1.0 <= batch["video"].min() < -0.3 and 0.3 < batch["video"].max() <= 1.0
    assert torch.equal(batch["image"], batch["video"][:, :, 0])
    assert len(batch["caption"]) == len(batch["key"]) == b and all(batch["caption"])
    assert isinstance(batch["skipped"], dict)


@pytest.fixture
def check_batch():
    """A function asserting the batch contract: check_batch(batch, B, T=8, H=32, W=32)."""
    return _check_batch


MIXED = dict(num_clips=16, num_val_clips=4, shard_size=4, fps=8, gop=4, seed=5, num_images=12,
             shapes=[[32, 48, 10], [48, 32, 8], [32, 32, 12], [24, 24, 5]])


@pytest.fixture(scope="session")
def mixed_set(tmp_path_factory):
    """Landscape 32x48x10, portrait 48x32x8, square 32x32x12 and short square 24x24x5 clips in turn (4 train shards
    x 4, val 4) + 3 image shards x 4 (img2dataset layout, the same (H, W)s); json with aesthetic/motion scores."""
    out = tmp_path_factory.mktemp("mixed") / "set"
    return out, write_synthetic_dataset(out, **MIXED)
