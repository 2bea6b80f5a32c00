"""Flicker: brightness pumping over time counts, motion that the reference has does not."""

from __future__ import annotations

import torch

from wantrain.evaluation.flicker import flicker
from wantrain.evaluation.upsampler import temporal_error


def test_flicker_sees_brightness_pumping_not_shared_motion() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 1, 40, 40, generator=gen) * 1.6 - 0.8
    moving = torch.cat([torch.roll(base, shifts=k, dims=-1) for k in range(6)], dim=2)  # (1, 3, 6, 40, 40)
    assert float(flicker(moving, moving)) == 0.0 and float(flicker(moving[:, :, :1], moving[:, :, :1])) == 0.0
    pump = torch.tensor([0, 8, 0, 8, 0, 8]).view(1, 1, 6, 1, 1) / 127.5  # ±8/255 every other frame
    assert abs(float(flicker(moving + pump, moving)) - 8.0) < 0.01
    # per-frame detail noise of the same size moves tdiff as much but flicker far less
    detail = (torch.rand(moving.shape, generator=gen) - 0.5) * 2 * 16 / 127.5
    assert float(flicker(moving + detail, moving)) < 0.5 * float(flicker(moving + pump, moving))
    assert float(temporal_error(moving + detail, moving)) > float(temporal_error(moving + pump, moving))
