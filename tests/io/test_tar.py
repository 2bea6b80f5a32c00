"""The one tar reader and writer: key rule, round trip, reproducible atomic writes, exact error accounting."""

from __future__ import annotations

import tarfile

import pytest

from wantrain.data.samples import SampleDecoder
from wantrain.io.tar import VIDEO_EXTENSIONS, ShardWriter, is_complete, read_samples, split_key, write_shard

SAMPLES = [{"__key__": f"k{i}", "mp4": bytes([i]) * (700 + i), "txt": f"caption {i}".encode(), "t5.npy": b"npy"}
           for i in range(5)]


class Errors:
    """Collects (reason, detail) like SkipCounter.add."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, reason: str, detail: str) -> None:
        self.calls.append((reason, detail))


@pytest.mark.parametrize("name, parts", [
    ("k1.mp4", ("k1", "mp4")),
    ("dir/k1.T5.NPY", ("dir/k1", "t5.npy")),  # everything after the basename's first dot, lowercased
    ("a.b/c.d", ("a.b/c", "d")),  # dots in folders do not split
    ("noext", None),
    ("dir/_meta.json", None),  # hidden / meta basenames belong to no sample
    (".hidden.mp4", None),
])
def test_one_key_rule(name, parts):
    assert split_key(name) == parts


def test_round_trip_member_order_and_same_bytes(tmp_path):
    a = write_shard(tmp_path / "a.tar", [{**s, "__url__": "ignored"} for s in SAMPLES])
    b = write_shard(tmp_path / "b.tar", SAMPLES)
    assert a.read_bytes() == b.read_bytes()  # fixed mtime/owner: same samples, same bytes
    with tarfile.open(a) as tar:
        assert tar.getnames()[:3] == ["k0.mp4", "k0.t5.npy", "k0.txt"]  # sorted by extension, no `__url__`
        assert {m.mtime for m in tar} == {0} and {m.uname for m in tar} == {""}
    got = list(read_samples(a))
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in got] == SAMPLES
    assert {s["__url__"] for s in got} == {str(a)}
    assert is_complete(a)


def test_wanted_members_and_disjoint_rank_splits(tmp_path):
    path = write_shard(tmp_path / "s.tar", SAMPLES)
    only_text = list(read_samples(path, lambda ext: ext == "txt"))
    assert [sorted(s) for s in only_text] == [["__key__", "__url__", "txt"]] * 5
    parts = [[s["__key__"] for s in read_samples(path, None, None, 3, r)] for r in range(3)]
    assert parts == [["k0", "k3"], ["k1", "k4"], ["k2"]]


def test_truncated_shard_drops_the_partial_sample_and_counts_once(tmp_path):
    path = write_shard(tmp_path / "t.tar", SAMPLES)
    with tarfile.open(path) as tar:
        cut = next(m for m in tar.getmembers() if m.name == "k3.t5.npy")
    path.write_bytes(path.read_bytes()[: cut.offset_data + 1])
    assert not is_complete(path)
    errors = Errors()
    assert [s["__key__"] for s in read_samples(path, on_error=errors)] == ["k0", "k1", "k2"]
    assert [r for r, _ in errors.calls] == ["truncated_tar"]
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        list(read_samples(path))  # without on_error the error is raised


def test_unreadable_shards_are_counted_as_such(tmp_path):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x01not a tar" * 100)
    errors = Errors()
    assert list(read_samples(garbage, on_error=errors)) == []
    assert list(read_samples(tmp_path / "missing.tar", on_error=errors)) == []
    assert [r for r, _ in errors.calls] == ["unreadable_shard", "unreadable_shard"]


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "s.tar"
    with pytest.raises(ValueError):
        with ShardWriter(target) as writer:
            writer.write(SAMPLES[0])
            writer.write({"__key__": "bad", "mp4": "not bytes"})
    assert list((tmp_path / "out").iterdir()) == []


def test_one_set_of_video_extensions():
    decoder = SampleDecoder()
    assert all(decoder.wanted(ext) for ext in VIDEO_EXTENSIONS) and "gif" in VIDEO_EXTENSIONS
    assert not decoder.wanted("pickle") and not decoder.wanted("jpg")
