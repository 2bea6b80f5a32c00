"""FrozenVAE on tiny random AutoencoderKLWan / AutoencoderKL: factors, normalisation, chunked decode, first frames."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from wantrain.diffusion.cond_aug import noise_frames
from wantrain.diffusion.space import LatentSpace
from wantrain.encoders.tiny import _synthetic_clips, build_tiny_kl_vae, build_tiny_wan_vae
from wantrain.encoders.vae import FrozenVAE
from wantrain.errors import WantrainError

KINDS = ("wan", "kl")


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A folder with the tiny wan/ and kl/ VAEs (untrained, calibrated on synthetic clips)."""
    root = tmp_path_factory.mktemp("tiny_vae")
    build_tiny_wan_vae(root / "wan", seed=0)
    build_tiny_kl_vae(root / "kl", seed=0)
    return root


@pytest.fixture(scope="module")
def clips():
    """Two synthetic clips (2, 3, 9, 32, 32) in [-1, 1], the ones the tiny VAEs were calibrated on."""
    return _synthetic_clips(0, 2, 9, 32)


def _raw_mean(vae: FrozenVAE, video: torch.Tensor) -> torch.Tensor:
    """The diffusers posterior mean of `video` (B, 3, T, H, W), unnormalised, as (B, C, T', h, w)."""
    if vae.kind == "wan":
        return vae.vae.encode(video).latent_dist.mean
    b, _, t, h, w = video.shape
    mu = vae.vae.encode(video.transpose(1, 2).reshape(b * t, 3, h, w)).latent_dist.mean
    return mu.view(b, t, *mu.shape[1:]).transpose(1, 2)


def _raw_decode(vae: FrozenVAE, mu: torch.Tensor) -> torch.Tensor:
    """The diffusers decode of raw latents (B, C, T', h, w) in one call, clamped."""
    if vae.kind == "wan":
        return vae.vae.decode(mu).sample.clamp(-1, 1)
    b, c, t, h, w = mu.shape
    out = vae.vae.decode(mu.transpose(1, 2).reshape(b * t, c, h, w)).sample
    return out.view(b, t, *out.shape[1:]).transpose(1, 2).clamp(-1, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_factors_and_shapes(vae_dir, clips, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    assert (vae.latent_channels, vae.spatial_factor) == (4, 8)
    assert vae.temporal_factor == (4 if kind == "wan" else 1)
    assert vae.latent_frames(9) == (3 if kind == "wan" else 9)
    assert vae.latent_frames(1) == 1
    z = vae.encode(clips)
    assert z.dtype == torch.float32 and tuple(z.shape) == (2, *vae.latent_shape(9, 32, 32))
    assert tuple(z.shape) == ((2, 4, 3, 4, 4) if kind == "wan" else (2, 4, 9, 4, 4))
    video = vae.decode(z)
    assert video.dtype == torch.float32 and video.shape == clips.shape
    assert video.min() >= -1 and video.max() <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_encode_is_deterministic_and_normalised(vae_dir, clips, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    z = vae.encode(clips)
    assert torch.equal(z, vae.encode(clips))
    # the builder measured the normalisation on these clips: normalised latents are ~N(0, 1), raw ones are not
    assert abs(z.mean().item()) < 0.3 and 0.6 < z.std().item() < 1.5
    raw = _raw_mean(vae, clips)
    assert raw.std().item() < 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_normalisation_follows_the_config(vae_dir, clips, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    cfg = json.loads((vae_dir / kind / "config.json").read_text())
    mu = _raw_mean(vae, clips)
    if kind == "wan":
        mean = torch.tensor(cfg["latents_mean"]).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg["latents_std"]).view(1, -1, 1, 1, 1)
        assert not torch.allclose(std, torch.ones_like(std)) and not torch.allclose(mean, torch.zeros_like(mean))
        expected = (mu - mean) / std
    else:
        assert cfg["shift_factor"] != 0 and cfg["scaling_factor"] != 1
        expected = (mu - cfg["shift_factor"]) * cfg["scaling_factor"]
    z = vae.encode(clips)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)
    # decode inverts the normalisation exactly: equal to diffusers' decode of the raw mean
    torch.testing.assert_close(vae.decode(z), _raw_decode(vae, mu), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_decode_equals_one_shot(vae_dir, kind):
    torch.manual_seed(0)
    z = torch.randn(2, 4, 4 if kind == "wan" else 5, 4, 4)  # wan: 4 latent frames -> 13 frames
    ref = FrozenVAE(vae_dir / kind, kind=kind, decode_chunk=1000).decode(z)
    assert ref.shape[2] == (13 if kind == "wan" else 5)
    for chunk in (1, 2, 3):  # fp32 conv kernels block differently by batch size: 1.04e-5 measured on an AMD EPYC
        torch.testing.assert_close(FrozenVAE(vae_dir / kind, kind=kind, decode_chunk=chunk).decode(z), ref,
                                   atol=5e-5, rtol=1e-5)
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    one_shot = _raw_decode(vae, z * vae.latents_std + vae.latents_mean)  # diffusers' own (per-frame causal) decode
    torch.testing.assert_close(ref, one_shot, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["zero_pad", "repeat"])
def test_first_frame_latents(vae_dir, clips, kind, mode):
    vae = FrozenVAE(vae_dir / kind, kind=kind, first_frame=mode)
    image = clips[:, :, 0]  # (2, 3, 32, 32)
    got = vae.first_frame_latents(image, 9)
    assert tuple(got.shape) == (2, *vae.latent_shape(9, 32, 32))
    if mode == "zero_pad":  # the frame, then zeros (mid-grey in [-1, 1]), encoded as one clip (Wan2.1 I2V)
        video = torch.cat([image[:, :, None], torch.zeros(2, 3, 8, 32, 32)], 2)
    else:
        video = image[:, :, None].expand(-1, -1, 9, -1, -1)
    torch.testing.assert_close(got, vae.encode(video), atol=1e-5, rtol=1e-5)
    if kind == "wan":  # the first latent frame sees only the first frame (causal)
        torch.testing.assert_close(got[:, :, :1], vae.encode(image[:, :, None]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["zero_pad", "repeat"])
def test_cond_aug_leaves_no_clean_copy_of_the_image(vae_dir, clips, kind, mode):
    """cond_aug noises every conditioning latent frame that carries the image (the same noise): with `repeat` all of
    them (a causal VAE's frames 1.. are no exact copies of frame 0, so a clean copy used to survive and give the level
    away), with `zero_pad` frame 0 alone (the rest encode the zero frames)."""
    space = LatentSpace(FrozenVAE(vae_dir / kind, kind=kind, first_frame=mode))
    frames = space.first_frames(clips[:, :, 0], 9)  # (2, C, 3, 8, 8)
    carries = space.image_frames(frames.shape[2])
    noisy = noise_frames(frames, torch.tensor([0.1, 0.1]), torch.Generator().manual_seed(0), image_frames=carries)
    changed = (noisy - frames).flatten(3).abs().amax((1, 3)) > 1e-3  # (B, T')
    assert changed.tolist() == [carries.tolist()] * 2
    assert carries.all() if mode == "repeat" else carries.tolist() == [True] + [False] * (frames.shape[2] - 1)
    delta = noisy - frames
    assert all(torch.allclose(delta[:, :, i], delta[:, :, 0], atol=1e-6) for i in range(frames.shape[2]) if carries[i])


@pytest.mark.parametrize("kind", KINDS)
def test_check_shape_errors_name_the_fix(vae_dir, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    vae.check_shape(9, 32, 64)
    if kind == "wan":
        with pytest.raises(WantrainError, match=r"4k\+1 frames.*data.num_frames to e.g. 5 or 9"):
            vae.check_shape(8, 32, 32)
        with pytest.raises(WantrainError, match="4k"):
            vae.encode(torch.zeros(1, 3, 8, 32, 32))
    else:
        vae.check_shape(8, 32, 32)
    with pytest.raises(WantrainError, match="data.resolution to a multiple of 8") as err:
        vae.check_shape(9, 36, 32)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        vae.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="latents"):
        vae.decode(torch.zeros(1, 3, 1, 4, 4))


@pytest.mark.parametrize("kind", KINDS)
def test_missing_weights_say_how_to_download(vae_dir, tmp_path, kind):
    with pytest.raises(FileNotFoundError, match="hf download") as err:
        FrozenVAE(tmp_path / "nowhere", kind=kind)
    assert ("Wan2.1" if kind == "wan" else "sd-vae-ft-mse") in str(err.value) and "\n" not in str(err.value)
    shutil.copy(vae_dir / kind / "config.json", tmp_path / "config.json")  # config without weights
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model.*hf download"):
        FrozenVAE(tmp_path, kind=kind)
    other = "kl" if kind == "wan" else "wan"
    with pytest.raises(WantrainError, match=f"set kind={kind}"):
        FrozenVAE(vae_dir / kind, kind=other)


def test_pipeline_layout_with_a_vae_subfolder(vae_dir, tmp_path):
    shutil.copytree(vae_dir / "wan", tmp_path / "pipe" / "vae")  # as `hf download ... --include "vae/*"` lays it out
    (tmp_path / "pipe" / "transformer").mkdir()
    assert FrozenVAE(tmp_path / "pipe", kind="wan").latent_channels == 4


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_and_invisible(vae_dir, clips, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    assert list(vae.parameters()) == [] and list(vae.state_dict()) == []
    vae.train()
    assert not vae.vae.training and all(not p.requires_grad for p in vae.vae.parameters())
    x = clips.clone().requires_grad_(True)
    assert not vae.encode(x).requires_grad
    assert not vae.decode(torch.zeros(1, 4, 1, 4, 4, requires_grad=True)).requires_grad


def test_bfloat16_computes_low_and_returns_float32(vae_dir, clips):
    vae = FrozenVAE(vae_dir / "wan", kind="wan", dtype="bfloat16")
    assert vae.dtype == torch.bfloat16
    z = vae.encode(clips)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, FrozenVAE(vae_dir / "wan", kind="wan").encode(clips), atol=0.3, rtol=0.1)
    assert vae.decode(z).dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_does_not_change_the_latents(vae_dir, clips, kind):
    vae = FrozenVAE(vae_dir / kind, kind=kind)
    z = vae.encode(clips)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as under bf16-mixed training: live == cached latents
        z_amp, video_amp = vae.encode(clips), vae.decode(z)
    assert torch.equal(z_amp, z) and torch.equal(video_amp, vae.decode(z))


def _psnr(vae: FrozenVAE, clips: torch.Tensor) -> float:
    mse = (vae.decode(vae.encode(clips)) - clips).pow(2).mean()
    return float(10 * torch.log10(4 / mse))


def test_train_steps_fit_the_builder_and_mark_it(tmp_path, clips):
    from safetensors.torch import load_file

    from wantrain.encoders.tiny import MARKER

    trained = build_tiny_kl_vae(tmp_path / "kl3", seed=0, train_steps=3)
    untrained = build_tiny_kl_vae(tmp_path / "kl0", seed=0)
    a = load_file(trained / "diffusion_pytorch_model.safetensors")
    b = load_file(untrained / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert json.loads((trained / MARKER).read_text())["train_steps"] == 3
    with pytest.raises(ValueError, match="remove it or pick another path"):
        build_tiny_kl_vae(trained, seed=0)  # a different build at the same path


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "steps"), [("kl", 200), ("wan", 150)])
def test_trained_tiny_vae_reconstructs_better(vae_dir, tmp_path, clips, kind, steps):
    build = build_tiny_wan_vae if kind == "wan" else build_tiny_kl_vae
    trained = FrozenVAE(build(tmp_path / kind, seed=0, train_steps=steps), kind=kind)
    gain = _psnr(trained, clips) - _psnr(FrozenVAE(vae_dir / kind, kind=kind), clips)
    assert gain > 2  # measured: kl 200 steps +4.6 dB (400: +9), wan 150 steps +3.6 dB
