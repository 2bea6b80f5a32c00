"""Prompts files, the rank split, cascade size checks and tiled stage inference."""

from __future__ import annotations

import json

import pytest
import torch

from wantrain.errors import WantrainError
from wantrain.inference.cascade import SRStage, check_chain, stages_for_size
from wantrain.inference.jobs import my_share, read_jobs
from wantrain.nets.upsampler import UpsampleStage


def test_csv_and_jsonl_rows_give_the_same_jobs(tmp_path):
    (tmp_path / "a.csv").write_text("image,prompt,seed,out\nimgs/x.png,a ball,,\n/abs/y.png,\"two, squares\",9,z.mp4\n")
    (tmp_path / "a.jsonl").write_text('{"image": "imgs/x.png", "prompt": "a ball"}\n\n'
                                      '{"image": "/abs/y.png", "prompt": "two, squares", "seed": 9, "out": "z.mp4"}\n')
    for name in ("a.csv", "a.jsonl"):
        first, second = read_jobs(tmp_path / name, seed=100, out_dir=tmp_path / "out")
        assert (first.image, first.seed, first.out) == (tmp_path / "imgs/x.png", 100, tmp_path / "out/00000.mp4")
        assert (second.prompt, second.seed, second.out) == ("two, squares", 9, tmp_path / "out/z.mp4")


@pytest.mark.parametrize("text, suffix, expected", [
    ("image,caption\nx.png,hi\n", ".csv", "needs 'image' and 'prompt'"),
    ('{"image": "x.png", "prompt": "hi"}\nnot json\n', ".jsonl", "line 2 is not JSON"),
    ("image,prompt,seed\nx.png,hi,seven\n", ".csv", "is not an integer"),
    ("image,prompt\n", ".csv", "has no rows"),
    ("x", ".txt", "use a .csv or .jsonl"),
])
def test_bad_prompts_files_fail_in_one_line(tmp_path, text, suffix, expected):
    path = tmp_path / f"p{suffix}"
    path.write_text(text)
    with pytest.raises(WantrainError, match=expected):
        read_jobs(path, 0, tmp_path)


def test_ranks_split_the_rows_without_overlap(tmp_path):
    (tmp_path / "p.csv").write_text("image,prompt\n" + "".join(f"{i}.png,p{i}\n" for i in range(7)))
    jobs = read_jobs(tmp_path / "p.csv", 0, tmp_path)
    shares = [my_share(jobs, r, 3) for r in range(3)]
    assert sorted(j.index for s in shares for j in s) == list(range(7)) and [len(s) for s in shares] == [3, 2, 2]


def stage(lr: int) -> SRStage:
    torch.manual_seed(0)
    net = UpsampleStage(channels=8, num_blocks=1, zero_init_last=False).eval()
    return SRStage(net, {"stage": 0, "lr_size": [lr, lr]})


def test_chain_sizes_and_reachable_resolutions():
    sizes = check_chain((32, 32), [stage(32), stage(64)], ["a", "b"])
    assert sizes == [(32, 32), (64, 64), (128, 128)]
    assert [stages_for_size(sizes, s) for s in (None, 32, 64, 128)] == [2, 0, 1, 2]
    with pytest.raises(WantrainError, match="size=96 cannot be produced"):
        stages_for_size(sizes, 96)
    with pytest.raises(WantrainError, match="trained on 64x64 -> 128x128 but the clip entering it is 32x32"):
        check_chain((32, 32), [stage(64)], ["b"])


def test_tiled_stage_matches_the_whole_frame_one():
    sr = stage(48)
    x = torch.rand(1, 3, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        whole, tiled = sr(x, tile=None), sr(x, tile=24, overlap=8)
        auto = sr(x, tile="auto")  # 48 px is small: no tiling
    assert tiled.shape == whole.shape == (1, 3, 3, 96, 96)
    assert torch.equal(auto, whole)
    assert (tiled - whole).abs().max() < 0.02 and not torch.equal(tiled, whole)
