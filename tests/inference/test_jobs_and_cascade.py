"""Prompts files, the rank split, and the one upsampler inference path: stages loaded from checkpoints and exports,
run in order, size checks, tiling, noise augmentation at inference."""

from __future__ import annotations

import pytest
import torch

from wantrain.degradations.ops import noise_augment
from wantrain.errors import WantrainError
from wantrain.inference.cascade import SRStage, augment_seed, check_chain, run_cascade, stages_for_size, upsample
from wantrain.inference.checkpoints import UPSAMPLER, SavedModel, read_saved, upsampler_config
from wantrain.inference.export import export_upsampler, write_saved
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


def stage(lr: int, number: int = 1) -> SRStage:
    torch.manual_seed(0)
    net = UpsampleStage(channels=8, num_blocks=1, zero_init_last=False).eval()
    return SRStage(net, number, [lr, lr])


def test_chain_sizes_and_reachable_resolutions():
    sizes = check_chain((32, 32), [stage(32), stage(64)], ["a", "b"])
    assert sizes == [(32, 32), (64, 64), (128, 128)]
    assert [stages_for_size(sizes, s) for s in (None, 32, 64, 128)] == [2, 0, 1, 2]
    with pytest.raises(WantrainError, match="size=96 cannot be produced"):
        stages_for_size(sizes, 96)
    with pytest.raises(WantrainError, match=r"\(sr_stage2\) was trained on 64x64 -> 128x128 but the clip entering "
                                            "it is 32x32"):
        check_chain((32, 32), [stage(64, 2)], ["b"])


def test_tiled_stage_matches_the_whole_frame_one():
    sr = stage(48)
    x = torch.rand(1, 3, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        whole, tiled = sr(x, tile=None), sr(x, tile=24, overlap=8)
        auto = sr(x, tile="auto")  # 48 px is small: no tiling
    assert tiled.shape == whole.shape == (1, 3, 3, 96, 96)
    assert torch.equal(auto, whole)
    assert (tiled - whole).abs().max() < 0.02 and not torch.equal(tiled, whole)


def _trained(seed: int, **kw) -> UpsampleStage:
    torch.manual_seed(seed)
    net = UpsampleStage(channels=8, num_blocks=1, **kw)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    return net.eval()


def test_stages_from_a_checkpoint_and_an_export_run_in_order(tmp_path):
    """(Was CascadedUpsampler's test.) Stage 1 from a fit-style export, stage 2 from a .ckpt: they chain."""
    first, second = _trained(1), _trained(2)
    export_upsampler(first, 1, (8, 8), tmp_path / "sr_stage1")
    node = second.config_node()
    ckpt = {"state_dict": {**{f"generator.{k}": v + 1 for k, v in second.state_dict().items()},
                           **{f"ema.module.{k}": v for k, v in second.state_dict().items()}},
            "wantrain_config": {"model": {"_target_": "wantrain.training.upsampler.UpsamplerModule", "stage": 2,
                                          "base_size": 8, "generator": node}, "data": {"resolution": 32}},
            "global_step": 5}
    torch.save(ckpt, tmp_path / "sr2.ckpt")
    stages = [SRStage.from_saved(read_saved(tmp_path / name)) for name in ("sr_stage1", "sr2.ckpt")]
    assert [(s.name, s.lr_size) for s in stages] == [("sr_stage1", (8, 8)), ("sr_stage2", (16, 16))]
    assert check_chain((8, 8), stages, ["a", "b"])[-1] == (32, 32)
    x = torch.rand(1, 3, 2, 8, 8) * 2 - 1
    with torch.no_grad():
        expected = second(first(x).clamp(-1, 1)).clamp(-1, 1)
        assert torch.equal(run_cascade(stages, x, tile=None), expected)  # the EMA weights, strictly loaded
        tiled = run_cascade(stages, x, tile=12, overlap=8)
    assert (tiled - expected).abs().max() < 2e-3
    raw = SRStage.from_saved(read_saved(tmp_path / "sr2.ckpt", use_ema=False))
    assert not torch.equal(raw.net.conv_in.weight, stages[1].net.conv_in.weight)
    with pytest.raises(WantrainError, match="no such file or folder"):
        read_saved(tmp_path / "missing.ckpt")


def test_export_folder_is_config_and_one_safetensors(tmp_path):
    net = _trained(3, noise_conditioning=True, emb_dim=16)
    folder = write_saved(SavedModel(UPSAMPLER, upsampler_config(net.config_node(), 2, (16, 16)), net.state_dict()),
                         tmp_path / "sr_stage2")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    saved = read_saved(folder)
    assert saved.kind == UPSAMPLER and saved.config["stage"] == 2 and saved.config["lr_size"] == [16, 16]
    assert saved.state.keys() == net.state_dict().keys()
    (folder / "model.safetensors").unlink()
    with pytest.raises(WantrainError, match="incomplete export: model.safetensors is missing"):
        read_saved(folder)


def test_sr_noise_level_noise_augments_the_input_as_in_training():
    """Bug 1: `sr_noise_level=s` told noise-conditioned stages s but fed them the clean input. At inference the
    input is noise-augmented at s exactly as in training (degradations.ops.noise_augment), seeded per clip."""
    net = UpsampleStage(channels=8, num_blocks=1, noise_conditioning=True, emb_dim=16).eval()  # fresh: bilinear(x)
    sr = SRStage(net, 1, (8, 8))
    x = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    with torch.no_grad():
        clean = sr(x, tile=None)
        noisy = sr(x, tile=None, noise_level=0.3, seeds=[7, 8])
        again = sr(x, tile=None, noise_level=0.3, seeds=[7, 9])
        expected = torch.cat([net(noise_augment(x[i:i + 1], torch.full((1,), 0.3),
                                                torch.Generator().manual_seed(augment_seed(s, 1))),
                                  torch.full((1,), 0.3)) for i, s in enumerate([7, 8])]).clamp(-1, 1)
    assert not torch.allclose(noisy, clean, atol=1e-2)  # the noise is there for the stage to remove
    assert torch.allclose(noisy, expected, atol=1e-6)
    assert torch.equal(again[0], noisy[0]) and not torch.equal(again[1], noisy[1])  # per-clip seeds
    plain = UpsampleStage(channels=8, num_blocks=1).eval()  # not noise-conditioned: trained on clean input
    with torch.no_grad():
        assert torch.equal(upsample(plain, x, noise_level=0.3), upsample(plain, x))
    with pytest.raises(WantrainError, match="sr_noise_level=1.5"):
        upsample(net, x, noise_level=1.5)
