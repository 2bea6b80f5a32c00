"""Buckets, images beside videos and metadata filters: real shards through the real pipeline."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch

from wantrain.data.buckets import Bucket, TooSmall, choose_bucket, make_buckets
from wantrain.data.dataset import ShardLoader, VideoShardDataset
from wantrain.data.filters import MetadataFilter
from wantrain.data.images import ImageDecoder
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec
from wantrain.errors import WantrainError

VIDEO = [[16, 16, 8], [16, 24, 8], [24, 16, 8], [16, 16, 4]]
IMAGE = [[16, 16, 1, 4], [16, 24, 1, 3], [24, 16, 1, 3]]


def test_buckets_from_a_list_or_generated_keep_memory_per_step_about_constant():
    listed = make_buckets([[16, 16, 8], [16, 24, 8, 5], [16, 16, 4]], batch_size=4, reference=(16, 16, 8),
                          image_sizes=True)
    assert [(b.name, b.batch_size) for b in listed] == [
        ("16x16x8", 4), ("16x24x8", 5), ("16x16x4", 8), ("16x16x1", 32), ("16x24x1", 21)]
    made = make_buckets({"area": 1024, "aspect_ratios": [1.0, 1.5, 0.5], "num_frames": [8, 4]}, 2, (32, 32, 8))
    assert [b.name for b in made] == ["32x32x8", "32x32x4", "24x40x8", "24x40x4", "48x24x8", "48x24x4"]
    ref = 2 * 32 * 32 * 8
    assert all(0.5 * ref < b.batch_size * b.height * b.width * b.frames <= ref for b in made)  # floor: never more
    assert make_buckets(None, 3, (32, 32, 8)) == [Bucket(32, 32, 8, 3)]
    for bad in ([[32, 32]], [], {"aspect_ratios": [1]}, [[32, 32, 8], [32, 32, 8]]):
        with pytest.raises(WantrainError, match="data.buckets"):
            make_buckets(bad, 2, (32, 32, 8))


def test_a_clip_goes_to_the_nearest_aspect_then_the_longest_window_that_fits_and_never_upscales_past_the_limit():
    buckets = make_buckets(VIDEO, 2, (16, 16, 8))
    enough = lambda n: (lambda t: t <= n)  # noqa: E731
    assert choose_bucket(buckets, 90, 160, enough(100)).name == "16x24x8"  # landscape
    assert choose_bucket(buckets, 160, 90, enough(100)).name == "24x16x8"  # portrait
    assert choose_bucket(buckets, 100, 100, enough(100)).name == "16x16x8"
    assert choose_bucket(buckets, 100, 100, enough(5)).name == "16x16x4"  # too short for 8 frames
    assert choose_bucket(buckets, 90, 160, enough(5)).name == "16x16x4"  # no landscape bucket that short
    assert choose_bucket(buckets, 100, 100, enough(3)) is None
    assert choose_bucket(buckets, 12, 12, enough(9), max_upscale=1.5).name == "16x16x8"
    with pytest.raises(TooSmall):
        choose_bucket(buckets, 8, 8, enough(9), max_upscale=1.5)


def _loader(out, rank=0, world=1, workers=2, batches=8, image_ratio=0.4, filters=None, seed=3) -> ShardLoader:
    buckets = make_buckets(VIDEO + IMAGE, 2, (16, 16, 8))
    video = tuple(b for b in buckets if b.frames > 1)
    common = dict(filters=MetadataFilter(filters), motion_key="motion_score", max_upscale=2.0)
    ds = VideoShardDataset(
        expand_shard_spec(str(out / "train-{00000..00003}.tar")),
        SampleDecoder(num_frames=8, resolution=16, buckets=video, **common), 2, train=True, seed=seed, rank=rank,
        world_size=world, shuffle_buffer=4, buckets=buckets,
        image_shards=expand_shard_spec(str(out / "images-{00000..00002}.tar")),
        image_decoder=ImageDecoder(16, (), tuple(b for b in buckets if b.frames == 1), **common),
        image_ratio=image_ratio)
    return ShardLoader(ds, num_workers=workers, batches_per_epoch=batches, persistent_workers=False)


def _batches(loader: ShardLoader, epochs: int = 1, stop: int | None = None) -> list[dict]:
    out = []
    for _ in range(epochs):
        for batch in loader:
            out.append(batch)
            if len(out) == stop:
                return out
    return out


def test_every_batch_is_one_bucket_and_images_train_as_single_frame_clips(mixed_set):
    out, _ = mixed_set
    sizes = {b.name: b.batch_size for b in make_buckets(VIDEO + IMAGE, 2, (16, 16, 8))}
    batches = _batches(_loader(out, batches=14))
    seen = {b["bucket"] for b in batches}
    assert len(seen - {"16x16x1", "16x24x1", "24x16x1"}) >= 3 and seen & {"16x16x1", "16x24x1", "24x16x1"}
    for b in batches:
        h, w, t = (int(v) for v in b["bucket"].split("x"))
        assert b["video"].shape == (sizes[b["bucket"]], 3, t, h, w)
        assert torch.equal(b["image"], b["video"][:, :, 0])  # an image is its own first-frame condition
        assert b["fps"].tolist() == [0.0 if t == 1 else 8.0] * len(b["key"])  # images: fps 0 (a still)
        assert all(0.0 <= m <= 4.0 for m in b["motion"].tolist()) and b["motion"].abs().sum() > 0
        assert b["skipped"] == {} and b["filtered"] == {}


def test_filtered_samples_are_counted_by_reason_apart_from_skips(mixed_set):
    out, _ = mixed_set
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    scores = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            scores += [json.load(tar.extractfile(m))["aesthetic_score"] for m in tar if m.name.endswith(".json")]
    low = sum(s < 5.0 for s in scores)
    assert 0 < low < len(scores)
    ds = VideoShardDataset(shards, SampleDecoder(num_frames=4, resolution=16,
                                                 filters=MetadataFilter({"aesthetic_score": {"min": 5.0}})), 3,
                           train=False)
    batches = list(ds)
    assert sum(len(b["key"]) for b in batches) == len(scores) - low
    assert sum(b["filtered"].get("aesthetic_score", 0) for b in batches) == low
    assert all(b["skipped"] == {} for b in batches)  # never a skip: max_skip_fraction does not see them
    with pytest.raises(WantrainError, match="data.filters.fps"):
        MetadataFilter({"fps": {"low": 3}})


def test_resume_with_buckets_and_images_is_bitwise_on_two_ranks_with_two_workers(mixed_set):
    out, _ = mixed_set
    for rank in (0, 1):
        full = _batches(_loader(out, rank, 2), epochs=2)
        first = _loader(out, rank, 2)
        head = _batches(first, stop=5)
        state = first.state_dict()  # one process: this rank's own state (under DDP every rank's, gathered)
        state["ranks"] = state["ranks"] * 2
        assert any(p.get("video", {}).get("pending") for p in state["ranks"][0]["positions"])  # buckets were waiting
        second = _loader(out, rank, 2)
        second.load_state_dict(state)
        tail = _batches(second, epochs=2)[: len(full) - 5]
        assert len(head) + len(tail) == len(full) == 16
        for a, b in zip(head + tail, full):
            assert a["bucket"] == b["bucket"] and a["key"] == b["key"] and torch.equal(a["video"], b["video"])


def test_ranks_take_image_steps_together_and_step_the_same_number_of_times(mixed_set):
    out, _ = mixed_set
    kinds = [[b["video"].shape[2] == 1 for b in _batches(_loader(out, rank, 2, batches=10))] for rank in (0, 1)]
    assert len(kinds[0]) == len(kinds[1]) == 10 and kinds[0] == kinds[1] and 0 < sum(kinds[0]) < 10


def test_clips_are_sampled_at_a_target_fps_drawn_per_clip_and_carry_it(mixed_set):
    out, _ = mixed_set
    shards = expand_shard_spec(str(out / "train-{00000..00003}.tar"))
    decoder = SampleDecoder(num_frames=3, resolution=16, fps=(4.0, 8.0), motion_key="motion_score")
    train = [b for b in VideoShardDataset(shards, decoder, 4, train=True, resampled=False, seed=1)]
    fps = [f for b in train for f in b["fps"].tolist()]
    assert set(fps) == {4.0, 8.0} and len(fps) == 16  # 8 fps sources: every 2nd frame or every frame
    val = list(VideoShardDataset(shards, decoder, 4, train=False))
    assert {f for b in val for f in b["fps"].tolist()} == {4.0}  # validation: the first target


def test_broken_images_are_skips_counted_like_broken_videos(mixed_set, tmp_path):
    from wantrain.data.synthetic import image_sample
    from wantrain.io.tar import write_shard

    out, _ = mixed_set
    good = [{"__key__": f"{i:04d}", **image_sample(0, i, 24, 24)} for i in range(3)]
    broken = {**good[0], "__key__": "9999", "jpg": b"not a jpeg" * 8}
    shard = write_shard(tmp_path / "img.tar", [good[0], broken, *good[1:]])
    ds = VideoShardDataset(expand_shard_spec(str(out / "train-00000.tar")), SampleDecoder(num_frames=4, resolution=16),
                           2, seed=1, shuffle_buffer=1, image_shards=[str(shard)],
                           image_decoder=ImageDecoder(16), image_ratio=1.0)
    batches = _batches(ShardLoader(ds, batches_per_epoch=6))
    assert all(b["video"].shape[2] == 1 for b in batches)
    assert sum(b["skipped"].get("bad_image", 0) for b in batches) >= 1
    assert all(b["filtered"] == {} for b in batches)
