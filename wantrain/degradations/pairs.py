"""LR/HR training pairs of an upsampler stage: crop, optional unsharp-masked target, degradation. A pure function,
run either by the DataLoader workers as a batch transform (off the training step's critical path, as RealBasicVSR's
data pipeline) or in the training step on its device from the seed the worker drew (BasicSR's `feed_data`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from wantrain.degradations.ops import random_crop, usm_sharpen
from wantrain.degradations.pipeline import DegradeConfig, degrade


def make_pair(video: torch.Tensor, cfg: DegradeConfig, generator: torch.Generator, train: bool = True,
              crop: int | None = None, usm: dict[str, Any] | None = None, codec_threads: int = 1,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """HR clips (B, 3, T, H, W) -> (LR (B, 3, T, H/2, W/2), noise level (B,), HR after cropping, the content loss's
    target). Training crops at random and degrades with `cfg`; validation crops the centre and adds no noise
    augmentation. With `usm` the target is the unsharp-masked HR (Real-ESRGAN l1_gt_usm / percep_gt_usm), and in
    training the LR is degraded from it too (`degrade_sharpened`, default true: Real-ESRGAN's `feed_data` blurs
    `gt_usm`, RealBasicVSR degrades its sharpened GT).

    Runs where `video` is: in a DataLoader worker (`PairTransform`) or on the GPU in the training step
    (`model.make_pairs=step`, BasicSR's `feed_data`); the parameters come from the CPU `generator`, the noise from a
    generator on the clips' device seeded by it, so both give the same pairs on the same device."""
    noise_generator = torch.Generator(video.device).manual_seed(int(torch.randint(2 ** 62, (), generator=generator)))
    h, w = video.shape[-2:]
    hr = video
    if crop and crop < min(h, w):
        hr = random_crop(video, int(crop), generator) if train else \
            video[..., (h - crop) // 2:(h - crop) // 2 + crop, (w - crop) // 2:(w - crop) // 2 + crop]
    cfg = cfg if train else dataclasses.replace(cfg, noise_aug_max=0.0)
    usm = dict(usm or {})
    degrade_sharpened = bool(usm.pop("degrade_sharpened", True))
    # in float32 outside bf16 autocast (grouped conv3d under CPU bf16 autocast takes minutes)
    with torch.autocast(hr.device.type, enabled=False):
        target = usm_sharpen(hr.float(), **usm).to(hr.dtype) if usm else hr
        lr, level = degrade((target if train and degrade_sharpened else hr).float(), cfg, generator, noise_generator,
                            codec_threads)
    return lr.to(hr.dtype), level, hr, target


@dataclass
class PairTransform:
    """A training batch's `video` -> its LR/HR pair, run in the DataLoader worker that made the batch: `video`
    becomes the (cropped) HR, with `lr`, `level` and (with USM) `target` beside it. The pair's seed comes from the
    batch's place in the data stream (the worker's generator: seed, rank, worker, epoch, batch), so resumed and DDP
    runs stay bitwise. With `in_step` the worker only adds that seed (`pair_seed`) and the training step makes the
    same pair on its device (`pair_generator`)."""

    cfg: DegradeConfig
    crop: int | None = None
    usm: dict[str, Any] | None = None
    in_step: bool = False

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        seed = torch.randint(2 ** 62, (), generator=generator)
        if self.in_step:
            batch["pair_seed"] = seed
            return batch
        lr, level, hr, target = make_pair(batch["video"], self.cfg, pair_generator(seed), True, self.crop, self.usm)
        batch.update(video=hr, lr=lr, level=level)
        if self.usm:
            batch["target"] = target
        return batch


def pair_generator(seed: torch.Tensor | int) -> torch.Generator:
    """The CPU generator of a batch's pair from its `pair_seed`."""
    return torch.Generator().manual_seed(int(seed))
