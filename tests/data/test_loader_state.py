"""ShardLoader state: after a restore the batch stream goes on exactly as an uninterrupted one would."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from wantrain.data.dataset import ShardLoader, VideoShardDataset
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec

BATCHES = 3  # per epoch


def _loader(shards: list[str], workers: int, rank: int = 0, world_size: int = 1) -> ShardLoader:
    ds = VideoShardDataset(shards, SampleDecoder(num_frames=8, resolution=32), 2, train=True, seed=5, rank=rank,
                           world_size=world_size, shuffle_buffer=4)
    return ShardLoader(ds, num_workers=workers, batches_per_epoch=BATCHES)


def _stream(loader: ShardLoader, epochs: int, stop: int | None = None, skips: list | None = None,
            ) -> list[tuple[str, float]]:
    """(key, checksum of the decoded clip) of every sample, epoch after epoch; `stop` batches at most."""
    out, count = [], 0
    for _ in range(epochs):
        for batch in loader:
            if skips is not None:
                skips.append(batch["skipped"])
            out += [(k, round(float(v.double().sum()), 6)) for k, v in zip(batch["key"], batch["video"])]
            count += 1
            if count == stop:
                return out
    return out


def _with_a_broken_clip(out: Path, tmp_path: Path) -> list[str]:
    """The small set's 4 train shards, the first with its second clip's mp4 replaced by junk bytes."""
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    broken = tmp_path / "broken-00000.tar"
    with tarfile.open(shards[0]) as src, tarfile.open(broken, "w") as dst:
        members = [m for m in src if m.isfile()]
        mp4s = [m.name for m in members if m.name.endswith(".mp4")]
        for m in members:
            data = src.extractfile(m).read()
            if m.name == mp4s[1]:
                data = b"not a video" * 10
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return [str(broken), *shards[1:]]


@pytest.mark.parametrize("workers,stop", [(0, 4), (2, 4), (2, 5), (2, 3)])
def test_restored_loader_continues_the_uninterrupted_stream(small_set, tmp_path, workers, stop):
    out, _ = small_set
    shards = _with_a_broken_clip(out, tmp_path)
    skips: list[dict] = []
    whole = _stream(_loader(shards, workers), epochs=3, skips=skips)
    assert sum(s.get("undecodable_video", 0) for s in skips) >= 1  # the broken clip was met and skipped
    first = _loader(shards, workers)
    head = _stream(first, epochs=3, stop=stop)  # interrupted mid-epoch (4, 5) or at an epoch's end (3)
    state = first.state_dict()
    resumed = _loader(shards, workers)
    resumed.load_state_dict(state)
    epochs_left = 3 - stop // BATCHES
    tail = _stream(resumed, epochs=epochs_left)
    assert len(whole) == 3 * BATCHES * 2
    assert head + tail == whole  # same samples, same random windows, same order: nothing repeated or lost


def test_fast_forward_reads_but_never_decodes_the_consumed_clips(small_set):
    out, _ = small_set
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    first = _loader(shards, 0)
    _stream(first, epochs=1, stop=BATCHES - 1)
    cost_before = first.shard_dataset.decoder.frames_decoded
    resumed = _loader(shards, 0)
    resumed.load_state_dict(first.state_dict())
    _stream(resumed, epochs=1, stop=1)
    # one batch of 2 clips (+ the look-ahead clip), not the 4 clips consumed before the interruption as well
    assert resumed.shard_dataset.decoder.frames_decoded <= cost_before * 3 / (2 * (BATCHES - 1)) + 1


def test_state_of_every_rank_and_a_changed_setup_starts_a_new_epoch(small_set):
    out, _ = small_set
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    rank1 = _loader(shards, 0, rank=1, world_size=2)
    _stream(rank1, epochs=1, stop=2)
    state = rank1.state_dict()
    assert len(state["ranks"]) == 1 and state["ranks"][0]["batches"] == 2  # no process group: this rank only
    other = _loader(shards, 1, rank=0, world_size=1)  # other workers and world size: positions mean nothing
    with pytest.warns(UserWarning, match="new data epoch 1"):
        other.load_state_dict(state)
    fresh = _loader(shards, 1)
    _stream(fresh, epochs=1)
    assert _stream(other, epochs=1) == _stream(fresh, epochs=1)  # = the next epoch of a new run


def test_validation_batches_carry_no_position_and_loader_keeps_global_rng(small_set):
    out, _ = small_set
    shards = expand_shard_spec(str(out / "val-{00000..00001}.tar"))
    ds = VideoShardDataset(shards, SampleDecoder(num_frames=8, resolution=32), 2, train=False, rank=0, world_size=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    batches = list(ShardLoader(ds, num_workers=1))
    assert torch.equal(torch.get_rng_state(), before)  # iterating draws worker seeds from its own generator
    assert all(set(b) == {"video", "image", "caption", "key", "skipped", "filtered", "bucket", "fps", "motion"}
               for b in batches)
