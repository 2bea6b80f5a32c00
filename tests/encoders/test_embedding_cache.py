"""Embedding-cache shards: originals unchanged + float16 npy arrays equal to the live encoders' outputs."""

from __future__ import annotations

import io
import os
import tarfile

import av
import numpy as np
import pytest
import torch
from PIL import Image

from wantrain.data.samples import SampleDecoder
from wantrain.data.skips import SkipError
from wantrain.encoders.cache import encode_shard, encode_shards
from wantrain.encoders.image import FrozenImageEncoder
from wantrain.encoders.text import FrozenTextEncoder
from wantrain.io.tar import is_complete, read_samples


def _mp4(first_rgb, frames=4, size=48):
    """A tiny h264 mp4 whose first frame is a flat `first_rgb` and later frames are noise."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(frames):
            noise = rng.integers(0, 255, (size, size, 3), np.uint8)
            img = np.full((size, size, 3), first_rgb, np.uint8) if i == 0 else noise
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _jpg(rgb, size=40):
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_shard(path, captions):
    """Shard with mp4 + txt + json per sample; sample 1 also has a jpg, the last has no caption."""
    with tarfile.open(path, "w") as tar:
        for i, caption in enumerate(captions):
            key = f"{i:06d}"
            members = {"mp4": _mp4((200, 30, 30 + 40 * i)), "json": b'{"fps": 8}'}
            if caption is not None:
                members["txt"] = caption.encode()
            if i == 1:
                members["jpg"] = _jpg((10, 220, 10))
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def encoders(tiny_dir):
    return FrozenTextEncoder(tiny_dir / "t5"), FrozenImageEncoder(tiny_dir / "dit")


@pytest.fixture()
def shards(tmp_path, captions):
    paths = []
    for s in range(2):
        p = tmp_path / "in" / f"train-{s:05d}.tar"
        p.parent.mkdir(exist_ok=True)
        _write_shard(p, captions[s * 2 : s * 2 + 2] + [None])
        paths.append(p)
    return paths


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def first_frames(resolution: int, image_from: str = "frame"):
    """The image loader the encode command uses: the conditioning image of a (whole-clip) validation window."""
    return SampleDecoder(num_frames=4, resolution=resolution, image_from=image_from).conditioning_image


def test_conditioning_image_is_frame_zero_or_jpg_without_a_caption():
    img = first_frames(32)({"__key__": "a", "mp4": _mp4((200, 30, 70))})
    assert img.shape == (3, 32, 32) and img.min() >= -1 and img.max() <= 1
    expected = torch.tensor([200, 30, 70]) / 127.5 - 1
    assert (img.mean((1, 2)) - expected).abs().max() < 0.1  # noise frames would average ~0
    jpg = first_frames(32, "jpg")({"__key__": "b", "mp4": _mp4((0, 0, 0)), "jpg": _jpg((10, 220, 10))})
    assert (jpg.mean((1, 2)) - (torch.tensor([10, 220, 10]) / 127.5 - 1)).abs().max() < 0.1
    with pytest.raises(SkipError, match="no video"):
        first_frames(32)({"__key__": "c", "txt": b"x"})


def test_cache_shard_members_dtype_and_live_equality(tmp_path, shards, encoders, captions):
    text_enc, image_enc = encoders
    load = first_frames(image_enc.resolution)
    stats = encode_shard(shards[0], tmp_path / "out.tar", text_enc, image_enc, load, batch_size=2)
    assert stats == {"samples": 3, "t5": 2, "dit": 3, "missing_caption": 1, "undecodable_image": 0}
    original, cached = _members(shards[0]), _members(tmp_path / "out.tar")
    assert {k: v for k, v in cached.items() if not k.endswith(".npy")} == original  # originals byte-identical
    assert sorted(k for k in cached if k.endswith(".npy")) == [
        "000000.dit.npy", "000000.t5.npy", "000001.dit.npy", "000001.t5.npy", "000002.dit.npy"]
    for i, caption in enumerate(captions[:2]):
        t5 = np.load(io.BytesIO(cached[f"{i:06d}.t5.npy"]), allow_pickle=False)
        emb, mask = text_enc([caption])
        assert t5.dtype == np.float16 and t5.shape == (int(mask.sum()), text_enc.dim)
        torch.testing.assert_close(torch.from_numpy(t5).float(), emb[0][mask[0]], atol=2e-3, rtol=2e-3)
    for i in range(3):
        dit = np.load(io.BytesIO(cached[f"{i:06d}.dit.npy"]), allow_pickle=False)
        members = {n.split(".", 1)[1]: d for n, d in original.items() if n.startswith(f"{i:06d}.")}
        sample = {"__key__": f"{i:06d}", **members}
        live = image_enc(load(sample)[None])[0]
        assert dit.dtype == np.float16 and dit.shape == (image_enc.num_tokens, image_enc.dim)
        torch.testing.assert_close(torch.from_numpy(dit).float(), live, atol=5e-3, rtol=5e-3)


def test_custom_image_loader_and_reencoding_replaces_old_arrays(tmp_path, shards, encoders):
    text_enc, image_enc = encoders
    calls = []

    def load_image(sample):
        calls.append(sample["__key__"])
        return torch.zeros(3, 64, 64)

    encode_shard(shards[0], tmp_path / "a.tar", text_enc, image_enc, load_image=load_image)
    assert calls == ["000000", "000001", "000002"]
    # re-encode images only
    encode_shard(tmp_path / "a.tar", tmp_path / "b.tar", None, image_enc, first_frames(image_enc.resolution))
    a, b = _members(tmp_path / "a.tar"), _members(tmp_path / "b.tar")
    assert sorted(a) == sorted(b)
    assert a["000000.t5.npy"] == b["000000.t5.npy"] and a["000000.dit.npy"] != b["000000.dit.npy"]


def test_resumable_per_shard_and_rank_split(tmp_path, shards, encoders):
    text_enc, image_enc = encoders
    out, load = tmp_path / "out", first_frames(image_enc.resolution)
    rows = encode_shards(shards, out, text_enc, image_enc, load, progress=False, rank=1, world_size=2)
    assert [r["status"] for r in rows] == ["written"] and not (out / shards[0].name).exists()
    rows = encode_shards(shards, out, text_enc, image_enc, load, progress=False)
    assert [r["status"] for r in rows] == ["written", "skipped"]
    # a truncated output (e.g. copied by hand) is not complete: it is rewritten
    data = (out / shards[0].name).read_bytes()
    (out / shards[0].name).write_bytes(data[: len(data) // 2])
    assert not is_complete(out / shards[0].name)
    rows = encode_shards(shards, out, text_enc, image_enc, load, progress=False)
    assert [r["status"] for r in rows] == ["written", "skipped"]
    assert is_complete(out / shards[0].name) and (out / shards[0].name).read_bytes() == data
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_truncated_input_is_an_error_row_and_writes_nothing(tmp_path, shards, encoders):
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) * 2 // 3])
    rows = encode_shards(shards, tmp_path / "out", *encoders, first_frames(encoders[1].resolution), progress=False)
    assert [r["status"] for r in rows] == ["error", "written"]
    assert sorted(os.listdir(tmp_path / "out")) == [shards[1].name]


def test_an_image_encoder_needs_an_image_loader(tmp_path, shards, encoders):
    with pytest.raises(ValueError, match="needs load_image"):
        encode_shard(shards[0], tmp_path / "x.tar", None, encoders[1])
    assert [s["__key__"] for s in read_samples(shards[0])] == ["000000", "000001", "000002"]
