"""The batch stream: contract shapes, determinism, rank/worker splits, windows, decode cost, embeddings."""

from __future__ import annotations

import io
import random
import tarfile

import numpy as np
import pytest
import torch

from wantrain.data.clips import sample_window
from wantrain.data.dataset import ShardLoader, VideoShardDataset
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec
from wantrain.data.skips import SkipError
from wantrain.data.synthetic import clip_spec, render_clip, synthetic_sample
from wantrain.io.mp4 import encode_mp4


def _train(out, **kw):
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    args = dict(batch_size=3, train=True, seed=0, rank=0, world_size=1)
    args.update(kw)
    return VideoShardDataset(shards, SampleDecoder(num_frames=8, resolution=32, frame_stride=1), **args)


def test_batches_follow_the_contract(small_set, check_batch):
    out, _ = small_set
    loader = ShardLoader(_train(out), num_workers=2, batches_per_epoch=3)
    batches = list(loader)
    assert len(batches) == 3 == len(loader)
    for b in batches:
        check_batch(b, 3)
    wide = VideoShardDataset(expand_shard_spec(str(out / "val-00000.tar")),
                             SampleDecoder(num_frames=4, resolution=(24, 40), frame_stride=2), 2, train=False)
    check_batch(next(iter(wide)), 2, t=4, h=24, w=40)


def test_same_seed_same_batches_other_rank_other_samples(small_set):
    out, _ = small_set
    first = [next(iter(ShardLoader(_train(out), num_workers=w, batches_per_epoch=2))) for w in (0, 0)]
    assert first[0]["key"] == first[1]["key"] and torch.equal(first[0]["video"], first[1]["video"])
    other_seed = next(iter(_train(out, seed=1)))
    assert not torch.equal(other_seed["video"], first[0]["video"])
    keys = {r: {k for b in ShardLoader(_train(out, rank=r, world_size=2), batches_per_epoch=6) for k in b["key"]}
            for r in (0, 1)}
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # disjoint shards per rank
    loader = ShardLoader(_train(out), batches_per_epoch=2)
    epoch0, epoch1 = ([k for b in loader for k in b["key"]] for _ in range(2))
    assert epoch0 != epoch1  # the epoch enters the seed


@pytest.mark.parametrize("workers", [1, 3])
def test_validation_is_one_deterministic_pass_even_with_more_workers_than_shards(small_set, workers):
    out, manifest = small_set
    shards = expand_shard_spec(str(out / "val-{00000..00001}.tar"))  # 2 shards: 4 + 1 clips
    passes = []
    for _ in range(2):
        ds = VideoShardDataset(shards, SampleDecoder(num_frames=8, resolution=32), 2, train=False, rank=0, world_size=1)
        batches = list(ShardLoader(ds, num_workers=workers))
        passes.append(sorted((k, float(v.sum())) for b in batches for k, v in zip(b["key"], b["video"])))
    assert [k for k, _ in passes[0]] == [f"{i:09d}" for i in range(16, 21)]  # every val clip exactly once
    assert passes[0] == passes[1]


def test_window_sampling():
    rng = random.Random(0)
    assert sample_window(20, 4, 2.0, None) == [6, 8, 10, 12]  # centred (13 frames of slack)
    starts = {sample_window(20, 4, 2.0, rng)[0] for _ in range(200)}
    assert starts == set(range(0, 14))
    assert sample_window(24, 4, 24 / 8) == [7, 10, 13, 16]  # 24 fps source at 8 fps
    assert sample_window(5, 8, 1.0, None) is None
    assert sample_window(5, 8, 1.0, None, loop=True) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_too_short_skipped_or_looped(small_set):
    out, _ = small_set
    with tarfile.open(out / "val-00001.tar") as tar:
        raw = {"__key__": "k", "__url__": "u", **{m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar}}
    with pytest.raises(SkipError) as err:
        SampleDecoder(num_frames=8, frame_stride=2, resolution=32)(raw)
    assert err.value.reason == "too_short"
    looped = SampleDecoder(num_frames=8, frame_stride=2, resolution=32, loop_short_clips=True)(raw)
    assert torch.equal(looped["video"][:, 0], looped["video"][:, 6])  # frames 0,2,..,10,0,2: looped


def test_decode_cost_follows_the_window_not_the_clip():
    spec = clip_spec(0, 0)
    short = encode_mp4(render_clip(spec, 0, 0, num_frames=16, size=32), gop=8)
    long = encode_mp4(render_clip(spec, 0, 0, num_frames=160, size=32), gop=8)
    cost = {}
    for name, data in (("short", short), ("long", long)):
        decoder = SampleDecoder(num_frames=8, resolution=32)
        for _ in range(5):
            decoder({"__key__": name, "__url__": "", "mp4": data, "txt": b"x"}, random.Random(1))
        cost[name] = decoder.frames_decoded / 5
    assert cost["short"] <= 17
    assert cost["long"] <= 8 + 8 + 1  # window + at most one GOP before it + one look-ahead frame
    assert cost["long"] < 160 / 4


def test_cached_embeddings_padded_and_never_unpickled(tmp_path):
    sample = synthetic_sample(0, 0, num_frames=8, size=32, fps=8, gop=4)
    rows = []
    for i, n in enumerate((3, 5)):
        buf = io.BytesIO()
        np.save(buf, np.ones((n, 6), np.float16) * (i + 1))
        rows.append({"__key__": f"k{i}", "__url__": "", **sample, "t5.npy": buf.getvalue(), "other.pyd": b"\x80junk"})
    decoder = SampleDecoder(num_frames=4, resolution=32, embeddings=("t5",))
    assert decoder.wanted("t5.npy") and not decoder.wanted("dit.npy") and not decoder.wanted("pyd")
    from wantrain.data.collate import collate_samples

    batch = collate_samples([decoder(r) for r in rows], ("t5",))
    assert batch["t5"].shape == (2, 5, 6) and batch["t5"].dtype == torch.float32
    assert batch["t5_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert float(batch["t5"][0, :3].mean()) == 1.0 and float(batch["t5"][0, 3:].abs().sum()) == 0.0
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SkipError) as err:
        decoder({**rows[0], "t5.npy": pickled.getvalue()})
    assert err.value.reason == "bad_embedding"
