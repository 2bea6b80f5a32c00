"""Shards with every kind of corruption mixed in: each sample is counted under its reason and skipped, a short fit
of the real default stage completes and logs the counts, and nothing in a shard is ever unpickled or executed."""

from __future__ import annotations

import csv
import io
import json
import pickle
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from wantrain.commands import fit
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec
from wantrain.data.skips import NoUsableSamples, SkipCounter, SkipError
from wantrain.data.synthetic import synthetic_sample
from wantrain.io.tar import read_samples, write_shard

CLIP = dict(num_frames=10, size=32, fps=8, gop=5)


def zero_frame_video() -> bytes:
    """A well-formed matroska container with a video stream and no frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()  # writes the header; no frame follows
    data = buf.getvalue()
    assert data  # a header and no frames
    return data


def huge_video(side: int = 4160) -> bytes:
    """Two black frames of side x side (17.3 Mpixel, above the 4096x4096 default ceiling)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = side
        frame = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")
        for _ in range(2):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    write_shard(path, ({"__key__": key, **members} for key, members in samples))


def corrupt_mix(root: Path) -> tuple[list[str], dict[str, int], int]:
    """3 shards mixing 10 good clips with one of each corruption; returns (shards, injected counts, good count)."""
    good = lambda i: synthetic_sample(5, i, **CLIP)  # noqa: E731
    shards = [
        [("a0", good(0)), ("bad_mp4", {**good(1), "mp4": b"\x00\x01garbage" * 100}), ("a1", good(2)),
         ("empty_txt", {**good(3), "txt": b""}), ("a2", good(4)),
         ("blank_txt", {**good(5), "txt": b" \n", "json": b"{}"}),
         ("a3", good(6))],
        [("a4", good(7)), ("bad_json", {**good(8), "json": b'{"caption": "x",'}), ("a5", good(9)),
         ("no_frames", {**good(10), "mp4": b"", "mkv": zero_frame_video()}), ("a6", good(11)),
         ("huge", {**good(12), "mp4": huge_video()}), ("a7", good(13))],
        [("a8", good(14)), ("a9", good(15)), ("cut", good(16))],
    ]
    shards[1][3][1].pop("mp4")  # the zero-frame sample has only its mkv
    paths = []
    for n, samples in enumerate(shards):
        paths.append(root / f"mix-{n}.tar")
        write_tar(paths[-1], samples)
    with tarfile.open(paths[2]) as tar:  # truncate the last shard inside its last sample's video
        video = [m for m in tar.getmembers() if m.name == "cut.mp4"][0]
    paths[2].write_bytes(paths[2].read_bytes()[: video.offset_data + video.size // 2])
    injected = {"undecodable_video": 2, "zero_size": 1, "missing_caption": 1, "bad_json": 1, "too_large": 1,
                "truncated_tar": 1}
    return [str(p) for p in paths], injected, 10


def test_every_corruption_is_counted_under_its_reason(tmp_path):
    shards, injected, good = corrupt_mix(tmp_path)
    decoder, counter, used = SampleDecoder(num_frames=8, resolution=32), SkipCounter(), []
    for url in shards:
        for raw in read_samples(url, decoder.wanted, counter.add):
            try:
                used.append(decoder(raw)["key"])
            except SkipError as err:
                counter.add(err.reason, f"{raw['__key__']}: {err}")
    assert dict(counter.total) == injected
    assert sorted(used) == [f"a{i}" for i in range(good)]


def test_short_fit_on_the_mix_completes_and_logs_the_skip_counts(compose, data_dir, tmp_path):
    shards, injected, _ = corrupt_mix(tmp_path)
    cfg = compose(f"paths.data_dir={data_dir}", "data=shards", f"data.train_shards=[{','.join(shards)}]",
                  "data.resampled=false", "data.num_workers=0", "data.batch_size=2", "data.num_frames=8",
                  "data.resolution=32", "data.max_skip_fraction=0.9", "trainer.max_epochs=1", "trainer.max_steps=-1",
                  "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1", "model.sampling.every_n_steps=0",
                  "logger=csv", "ckpt_path=null", "print_config=false", "run_name=mix", root=tmp_path)
    fit.run(cfg)
    (metrics,) = Path(cfg.run_dir).glob("csv/*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    last = {k: v for row in rows for k, v in row.items() if v}  # the last logged value of every column
    for reason, count in injected.items():
        assert float(last[f"data/skipped_{reason}"]) == count, reason
    assert float(last["data/skipped_fraction"]) == pytest.approx(7 / 17)
    assert float(last["train/nonfinite_steps"]) == 0


def test_a_stream_without_one_usable_sample_fails_with_the_fix():
    counter = SkipCounter(max_pending=50)
    with pytest.raises(NoUsableSamples, match=r"51 samples in a row were skipped without one usable \(too_short=51;"
                                              r".*lower data.num_frames"):
        for i in range(60):
            counter.add("too_short", f"s{i}: 32 frames < window of 40 x step 1")
    counter = SkipCounter(max_pending=50)
    for _ in range(10):  # skips between batches are fine
        for _i in range(40):
            counter.add("undecodable_video")
        counter.take()


class Boom:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_nothing_in_a_shard_is_unpickled_or_executed(tmp_path):
    marker = tmp_path / "PWNED"
    evil_npy = io.BytesIO()
    np.save(evil_npy, np.array([Boom(marker)], dtype=object), allow_pickle=True)
    sample = {**synthetic_sample(5, 0, **CLIP), "t5.npy": evil_npy.getvalue(), "pickle": pickle.dumps(Boom(marker)),
              "pth": pickle.dumps(Boom(marker)),
              "json": json.dumps({"caption": "x", "url": f"pipe:touch {marker}"}).encode(),
              "txt": f"pipe:touch {marker}".encode()}
    shard = tmp_path / "evil.tar"
    write_tar(shard, [(f"pipe:touch {marker}", sample)])
    decoder = SampleDecoder(num_frames=8, resolution=32, embeddings=("t5",))
    counter = SkipCounter()
    (raw,) = list(read_samples(str(shard), decoder.wanted, counter.add))
    assert "pickle" not in raw and "pth" not in raw  # unknown members are never even read
    with pytest.raises(SkipError) as err:
        decoder(raw)
    assert err.value.reason == "bad_embedding" and "allow_pickle" in str(err.value)
    ok = SampleDecoder(num_frames=8, resolution=32)(raw)  # without embeddings: caption is plain text
    assert ok["caption"] == f"pipe:touch {marker}"
    assert not marker.exists()
    # a pipe: spec runs only where the user wrote it (the config / a list file named in it), e.g. this one:
    (raw,) = list(read_samples(f"pipe:cat {shard}", decoder.wanted, counter.add))
    assert expand_shard_spec(f"pipe:cat {shard}") == [f"pipe:cat {shard}"] and raw["__key__"].endswith("PWNED")
    assert not marker.exists()
