"""Shard specs as users write them, and splitting shards over ranks and workers."""

from __future__ import annotations

import itertools

import pytest

from wantrain.data.shards import assign_shards, expand_shard_spec


def _touch(tmp_path, names):
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    return [str(tmp_path / n) for n in names]


def test_expand_spec_forms(tmp_path):
    paths = _touch(tmp_path, [f"s-{i:03d}.tar" for i in range(4)])
    assert expand_shard_spec(str(tmp_path / "s-{000..003}.tar")) == paths
    assert expand_shard_spec([paths[0], str(tmp_path / "s-{002..003}.tar")]) == [paths[0], *paths[2:]]
    assert expand_shard_spec(str(tmp_path)) == paths  # a directory
    assert expand_shard_spec(str(tmp_path / "s-*.tar")) == paths  # a glob
    listing = tmp_path / "shards.txt"
    listing.write_text("# my shards\ns-000.tar\n\n" + paths[3] + "\npipe:cat " + paths[1] + "\n")
    assert expand_shard_spec(str(listing)) == [paths[0], paths[3], "pipe:cat " + paths[1]]
    expected = [f"pipe:aws s3 cp s3://b/{i}.tar -" for i in range(3)]
    assert expand_shard_spec("pipe:aws s3 cp s3://b/{0..2}.tar -") == expected
    assert expand_shard_spec("https://host/d/{00..01}.tar") == ["https://host/d/00.tar", "https://host/d/01.tar"]
    assert expand_shard_spec(f"{paths[0]}::{paths[1]}") == paths[:2]


def test_missing_and_empty_specs_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope-0\.tar does not exist.*and 1 more"):
        expand_shard_spec(str(tmp_path / "nope-{0..1}.tar"))
    with pytest.raises(FileNotFoundError, match="matches no shards"):
        expand_shard_spec(str(tmp_path / "*.tar"))
    with pytest.raises(ValueError, match="pipe:aws s3 cp"):
        expand_shard_spec("s3://bucket/x.tar")


@pytest.mark.parametrize("num_shards,world,workers", [(8, 2, 2), (3, 2, 2), (1, 2, 3), (5, 1, 4), (2, 4, 1)])
def test_assignment_is_a_partition(num_shards, world, workers):
    shards = [f"s{i}" for i in range(num_shards)]
    samples_per_shard = 12
    owner = {}
    for rank, worker in itertools.product(range(world), range(workers)):
        mine, mod, res = assign_shards(shards, rank, world, worker, workers)
        assert mine, "every (rank, worker) reads something"
        for s in mine:
            for pos in range(samples_per_shard):
                if pos % mod == res:
                    assert (s, pos) not in owner, "a sample read twice"
                    owner[(s, pos)] = (rank, worker)
    assert len(owner) == num_shards * samples_per_shard
