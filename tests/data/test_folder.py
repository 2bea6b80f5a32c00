"""from-folder: videos + captions to shards, resumable, with a summary of skips; the shards feed the pipeline."""

from __future__ import annotations

import json
import tarfile

from wantrain.data.dataset import ShardLoader, VideoShardDataset
from wantrain.data.folder import PROGRESS, write_shards_from_folder
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec
from wantrain.data.synthetic import synthetic_sample


def _videos(folder, indices, caption="txt"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        s = synthetic_sample(7, i, num_frames=10, size=40, fps=8, gop=5)
        (folder / f"clip{i}.mp4").write_bytes(s["mp4"])
        if caption == "txt":
            (folder / f"clip{i}.txt").write_text(s["txt"].decode())


def test_from_folder_writes_readable_shards_and_resumes(tmp_path, check_batch):
    src, out = tmp_path / "in", tmp_path / "out"
    _videos(src / "a", range(5))
    _videos(src / "b", range(5, 7), caption=None)  # captions come from the csv
    (src / "b" / "clip7.mp4").write_bytes(b"not a video at all" * 10)
    _videos(src / "b", [8], caption=None)  # no caption anywhere
    (src / "empty.webm").write_bytes(b"")
    csv = tmp_path / "captions.csv"
    csv.write_text("path,caption\nb/clip5.mp4,a csv caption\nclip6.mp4,another caption\nb/clip7.mp4,broken\n")

    first = write_shards_from_folder(src, out, captions_csv=csv, shard_size=3, progress=False)
    assert first.written == 7 and first.shards == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    skipped = {reason: len(paths) for reason, paths in first.skipped.items()}
    assert skipped == {"undecodable_video": 1, "missing_caption": 1, "zero_size": 1}
    assert "skipped 1 (missing_caption): b/clip8.mp4" in first.describe()
    with tarfile.open(out / "shard-00001.tar") as tar:
        meta = json.loads(tar.extractfile("000000003.json").read())
    assert meta["frames"] == 10 and meta["size"] == [40, 40] and meta["fps"] == 8.0 and meta["source"]

    _videos(src / "c", range(20, 22))  # new videos appear; rerun resumes
    again = write_shards_from_folder(src, out, captions_csv=csv, shard_size=3, progress=False)
    assert again.resumed_from == 7 and again.written == 9 and len(again.shards) == 4
    assert len((out / PROGRESS).read_text().splitlines()) == 4  # one record per shard, nothing redone
    keys = []
    ds = VideoShardDataset(expand_shard_spec(str(out)), SampleDecoder(num_frames=8, resolution=32), 4, train=False)
    for batch in ShardLoader(ds):
        check_batch(batch, len(batch["key"]))
        keys += batch["key"]
        assert batch["skipped"] == {}
    assert sorted(keys) == [f"{i:09d}" for i in range(9)]
    captions = [c for b in ShardLoader(ds) for c in b["caption"]]
    assert "a csv caption" in captions and "another caption" in captions
