"""First-frame PSNR and the warping-free temporal consistency metrics on clips with known answers."""

from __future__ import annotations

import math

import torch

from wantrain.evaluation.video_metrics import first_frame_psnr, psnr, temporal_difference, temporal_jump


def test_first_frame_psnr():
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    video = image[:, :, None].repeat(1, 1, 4, 1, 1)
    assert torch.equal(first_frame_psnr(video, image), torch.full((2,), 100.0))
    shifted = video + 0.2  # mse 0.04 on a data range of 2: 10 log10(4 / 0.04) = 20 dB
    assert torch.allclose(first_frame_psnr(shifted, image), torch.full((2,), 20.0), atol=1e-4)
    assert math.isclose(psnr(shifted, video)[0].item(), 20.0, abs_tol=1e-4)


def test_temporal_difference_and_jump():
    static = torch.zeros(1, 3, 5, 4, 4)
    flicker = torch.tensor([-1.0, 1.0, -1.0, 1.0, -1.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 4, 4)
    ramp = torch.linspace(-1, 1, 5).view(1, 1, 5, 1, 1).expand(1, 3, 5, 4, 4)
    assert temporal_difference(static).item() == 0
    assert temporal_difference(flicker).item() == 1.0  # black <-> white every frame
    assert math.isclose(temporal_difference(ramp).item(), 0.25, rel_tol=1e-6)  # [0, 1] in 4 equal steps
    assert math.isclose(temporal_jump(ramp).item(), 1.0, rel_tol=1e-5)
    cut = torch.cat([torch.zeros(1, 3, 3, 4, 4), torch.ones(1, 3, 2, 4, 4)], dim=2)  # one scene cut
    assert math.isclose(temporal_jump(cut).item(), 4.0, rel_tol=1e-5)


def test_one_psnr_for_both_value_ranges_matches_torchmetrics():
    from torchmetrics.functional.image import peak_signal_noise_ratio

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 2, 8, 8, generator=gen) * 2 - 1, torch.rand(3, 3, 2, 8, 8, generator=gen) * 2 - 1
    per_clip = psnr(a, b)  # [-1, 1]: data range 2
    assert per_clip.shape == (3,)
    for i in range(3):
        ref = peak_signal_noise_ratio(a[i:i + 1], b[i:i + 1], data_range=(-1.0, 1.0))
        assert torch.allclose(per_clip[i], ref, atol=1e-4)
    assert torch.allclose(psnr((a + 1) / 2, (b + 1) / 2, data_range=1.0), per_clip, atol=1e-4)  # [0, 1]
    assert torch.equal(psnr(a, a), torch.full((3,), 100.0))
