"""Training pairs made by the DataLoader workers (issue 29): every training batch of an upsampler loader carries its
LR/HR pair, the pair depends only on the batch's place in the data stream (a second pass makes the same pairs; the
bitwise resume of an upsampler run is tests/training/test_exact_resume.py), and it is the stage's own `make_pair`."""

from __future__ import annotations

import torch

from wantrain.data.dataset import make_seed
from wantrain.degradations.pairs import PairTransform, make_pair
from wantrain.degradations.pipeline import DegradeConfig
from wantrain.degradations.real import RealDegradeConfig

CFG = DegradeConfig(real=RealDegradeConfig(kernel_size=(3, 7), codec_prob=0.5), noise_aug_max=0.1)


def batches(compose, data_dir, tmp_path, workers: int, n: int = 4) -> list[dict]:
    from hydra.utils import instantiate

    cfg = compose("+experiment=sr_tiny", f"paths.data_dir={data_dir}", f"data.num_workers={workers}",
                  "data.num_frames=2", "data.resolution=32", "data.batch_size=2", root=tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.train_transform = PairTransform(CFG, crop=16, usm={"weight": 0.5, "sigma": 2.0, "threshold": 10.0})
    loader = iter(datamodule.train_dataloader())
    return [next(loader) for _ in range(n)]


def test_loader_workers_make_the_pairs_by_stream_position(compose, data_dir, tmp_path) -> None:
    two = batches(compose, data_dir, tmp_path, workers=2)
    again = batches(compose, data_dir, tmp_path, workers=2)
    for a, b in zip(two, again):
        assert a["lr"].shape == (2, 3, 2, 8, 8) and a["video"].shape == (2, 3, 2, 16, 16)  # LR of the 16 px crop
        assert a["target"].shape == a["video"].shape and a["level"].shape == (2,)
        assert all(torch.equal(a[k], b[k]) for k in ("lr", "video", "target", "level"))
    assert not torch.equal(two[0]["lr"], two[1]["lr"])  # batches draw their own parameters


def test_the_worker_pair_is_the_stages_make_pair() -> None:
    video = torch.rand(2, 3, 2, 32, 32) * 2 - 1
    seed = make_seed(0, 0, 1, 0, 3, 5)
    made = PairTransform(CFG, crop=16)({"video": video.clone()}, torch.Generator().manual_seed(seed))
    lr, level, hr, target = make_pair(video, CFG, torch.Generator().manual_seed(seed), True, 16)
    assert torch.equal(made["lr"], lr) and torch.equal(made["level"], level) and torch.equal(made["video"], hr)
    assert "target" not in made and torch.equal(target, hr)  # no USM: the HR is the target
