"""Training pairs made by the DataLoader workers (issue 29): every training batch of an upsampler loader carries its
LR/HR pair, the pair depends only on the batch's place in the data stream (a second pass makes the same pairs; the
bitwise resume of an upsampler run is tests/training/test_exact_resume.py), and it is the stage's own `make_pair`."""

from __future__ import annotations

import torch

from wantrain.data.dataset import make_seed
from wantrain.degradations.jpeg import jpeg
from wantrain.degradations.pairs import PairTransform, make_pair, pair_generator
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


def test_the_worker_pair_is_the_pair_the_step_makes_from_its_seed() -> None:
    """make_pairs=workers and make_pairs=step give the same pair for the same place in the stream (on one device):
    the worker either makes it or passes its seed to the step."""
    video = torch.rand(2, 3, 2, 32, 32) * 2 - 1
    seed = make_seed(0, 0, 1, 0, 3, 5)
    made = PairTransform(CFG, crop=16)({"video": video.clone()}, torch.Generator().manual_seed(seed))
    seeded = PairTransform(CFG, crop=16, in_step=True)({"video": video.clone()}, torch.Generator().manual_seed(seed))
    assert set(seeded) == {"video", "pair_seed"} and torch.equal(seeded["video"], video)  # the step crops
    lr, level, hr, target = make_pair(seeded["video"], CFG, pair_generator(seeded["pair_seed"]), True, 16,
                                      codec_threads=2)
    assert torch.equal(made["lr"], lr) and torch.equal(made["level"], level) and torch.equal(made["video"], hr)
    assert "target" not in made and torch.equal(target, hr)  # no USM: the HR is the target


def photo_frames() -> torch.Tensor:
    """Two frames (3, 2, 61, 93) of scikit-learn's china photo, odd sizes (partial JPEG blocks), in [-1, 1]."""
    from sklearn.datasets import load_sample_image

    image = torch.from_numpy(load_sample_image("china.jpg").copy()).permute(2, 0, 1).float() / 127.5 - 1
    return torch.stack([image[:, 100:161, 200:293], image[:, 140:201, 260:353]], 1)


def test_the_step_jpeg_is_pillows_jpeg() -> None:
    """The PyTorch JPEG (`model.make_pairs=step` on a GPU, `degrade.jpeg_backend=torch`) against Pillow's libjpeg on a
    photo at odd sizes: within 0.1 dB of Pillow's error, and 40 dB from Pillow's decoded image (measured: 45-48 dB;
    the difference is libjpeg's integer DCT)."""
    from wantrain.degradations.ops import jpeg_compress
    from wantrain.evaluation.video_metrics import psnr

    x = photo_frames()[None]  # (1, 3, T, H, W) in [-1, 1]
    for q in (10, 50, 95):
        quality = torch.tensor([q])
        pil, ours = jpeg_compress(x, quality, "pil"), jpeg_compress(x, quality, "torch")
        assert ours.shape == x.shape
        err_pil, err_ours = (psnr((v + 1) / 2, (x + 1) / 2, data_range=1.0).mean() for v in (pil, ours))
        assert abs(float(err_pil - err_ours)) < 0.1, (q, err_pil, err_ours)
        assert float(psnr((ours + 1) / 2, (pil + 1) / 2, data_range=1.0).mean()) > 40
    assert torch.equal(jpeg(torch.zeros(1, 3, 8, 8), torch.tensor([75])), torch.zeros(1, 3, 8, 8))
