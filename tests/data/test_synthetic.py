"""The synthetic writer: deterministic real mp4 shards in the video2dataset layout, written atomically."""

from __future__ import annotations

import json
import tarfile

import pytest

from wantrain.data.synthetic import caption_corpus, write_synthetic_dataset
from wantrain.data.video import open_video


def test_layout_and_content(small_set):
    out, manifest = small_set
    assert manifest["train"] == [f"train-{i:05d}.tar" for i in range(4)]
    assert manifest["val"] == ["val-00000.tar", "val-00001.tar"]
    corpus = set(caption_corpus())
    with tarfile.open(out / "train-00000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == ["000000000.json", "000000000.mp4", "000000000.txt"]  # webdataset.TarWriter order
        assert len(names) == 12
        caption = tar.extractfile("000000000.txt").read().decode()
        meta = json.loads(tar.extractfile("000000000.json").read())
        video = tar.extractfile("000000000.mp4").read()
    assert caption in corpus and meta["caption"] == caption
    assert meta["fps"] == 8 and meta["frames"] == 12 and meta["size"] == [48, 48]
    reader = open_video(video)
    assert (reader.meta.num_frames, reader.meta.fps, reader.meta.height) == (12, 8.0, 48)
    frames = reader.get_frames(list(range(12)))
    assert frames.shape == (12, 48, 48, 3)
    assert frames[0].std() > 5 and abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # textured, moving


def test_same_arguments_same_bytes_and_reuse(small_set, small_args, tmp_path):
    SMALL = small_args
    _, first = small_set
    again = write_synthetic_dataset(tmp_path / "again", **SMALL)
    assert again["sha256"] == first["sha256"]
    assert write_synthetic_dataset(tmp_path / "again", **SMALL)["sha256"] == first["sha256"]  # reused
    other = write_synthetic_dataset(tmp_path / "other", **{**SMALL, "seed": 4})
    assert other["sha256"]["train-00000.tar"] != first["sha256"]["train-00000.tar"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    with pytest.raises(ValueError, match="delete it or choose another"):
        write_synthetic_dataset(tmp_path / "again", **{**SMALL, "num_clips": 8})


def test_caption_corpus_describes_motion():
    corpus = caption_corpus()
    assert len(corpus) == len(set(corpus)) > 1000
    assert "a red circle moves left on a striped background" in corpus
    assert any("turns" in c for c in corpus) and any("grows" in c for c in corpus)
