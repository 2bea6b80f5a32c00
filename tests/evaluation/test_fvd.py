"""FVD: the Fréchet distance against closed forms, the I3D input pipeline, and loading weights by path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wantrain.errors import WantrainError
from wantrain.evaluation.fvd import build_i3d, frechet_distance, load_i3d, preprocess


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 6)) @ rng.normal(size=(6, 6))  # correlated features
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # b = 2a + 3: S_b = 4 S_a, (S_a S_b)^½ = 2 S_a, so FD = |mu_b - mu_a|² + Tr(S_a)
    b = 2 * a + 3
    expected = ((b.mean(0) - a.mean(0)) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    c = a + 0.5  # a pure shift costs the squared mean shift only
    assert frechet_distance(a, c) == pytest.approx(6 * 0.25, rel=1e-6)
    with pytest.raises(WantrainError, match="at least 2 clips"):
        frechet_distance(a[:1], b)


def test_short_clips_are_stretched_to_sixteen_frames_at_224():
    clip = torch.linspace(-1, 1, 8).view(1, 1, 8, 1, 1).expand(2, 3, 8, 32, 40)
    x = preprocess(clip)
    assert x.shape == (2, 3, 16, 224, 224)
    assert torch.equal(x[0, 0, ::2, 0, 0], clip[0, 0, :, 0, 0]) and torch.equal(x[0, 0, 1::2, 0, 0], x[0, 0, ::2, 0, 0])


def test_i3d_weights_load_by_path_and_refuse_others(tmp_path):
    torch.manual_seed(0)
    net = build_i3d()
    good = tmp_path / "i3d.pt"
    torch.save(net.state_dict(), good)
    loaded = load_i3d(good)
    assert all(torch.equal(p, q) for p, q in zip(loaded.state_dict().values(), net.state_dict().values()))
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WantrainError, match="do not fit the Inception-I3D network"):
        load_i3d(wrong)
    with pytest.raises(WantrainError, match="no such file"):
        load_i3d(tmp_path / "missing.pt")
