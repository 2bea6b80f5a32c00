"""FrozenImageEncoder (dit and clip backends) on tiny models loaded from disk like real weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from wantrain.encoders.image import FrozenImageEncoder


def _images(batch=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def test_dit_shapes_dims_and_blocks(tiny_dir):
    enc = FrozenImageEncoder(tiny_dir / "dit", backend="dit")
    tokens = enc(_images())
    assert enc.resolution == 64 and enc.dim == 32 and enc.num_tokens == 16
    assert tokens.shape == (4, 16, 32) and tokens.dtype == torch.float32
    first = FrozenImageEncoder(tiny_dir / "dit", backend="dit", block=0)(_images())
    assert not torch.allclose(first, tokens)
    # other sizes are center-cropped and resized to the encoder's resolution
    assert enc(_images(size=80)).shape == (4, 16, 32)
    wide = torch.cat([_images(size=64), _images(size=64, seed=1)], dim=-1)  # (B, 3, 64, 128)
    torch.testing.assert_close(enc(wide), enc(wide[..., 32:96]), atol=1e-5, rtol=1e-5)


def test_dit_tokens_are_the_hidden_states_of_the_block_in_the_full_model(tiny_dir):
    """Running blocks ourselves equals a forward hook on the diffusers DiT run at t=0 with the null class."""
    enc = FrozenImageEncoder(tiny_dir / "dit", backend="dit", block=0)
    dit, vae = enc._frozen["transformer"], enc._frozen["vae"]
    x = _images()
    seen = {}
    handle = dit.transformer_blocks[0].register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        dit(latents, timestep=torch.zeros(4, dtype=torch.long),
            class_labels=torch.full((4,), dit.config.num_embeds_ada_norm))
    handle.remove()
    torch.testing.assert_close(enc(x), seen["h"], atol=1e-6, rtol=1e-6)


def test_clip_matches_transformers_with_its_own_preprocessing(tiny_dir):
    from transformers import CLIPImageProcessor, CLIPVisionModel

    enc = FrozenImageEncoder(tiny_dir / "clip", backend="clip")
    assert (enc.resolution, enc.dim, enc.num_tokens) == (32, 32, 17)
    x = _images(size=32)
    proc = CLIPImageProcessor.from_pretrained(tiny_dir / "clip")
    pixels = proc(images=list(((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()),
                  return_tensors="pt", do_rescale=True)["pixel_values"]
    model = CLIPVisionModel.from_pretrained(tiny_dir / "clip").eval()
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(enc(x), out.last_hidden_state, atol=2e-2, rtol=2e-2)
    penultimate = FrozenImageEncoder(tiny_dir / "clip", backend="clip", block=-2)(x)
    torch.testing.assert_close(penultimate, out.hidden_states[-2], atol=2e-2, rtol=2e-2)
    assert enc(_images(size=64)).shape == (4, 17, 32)


@pytest.mark.parametrize("backend", ["dit", "clip"])
def test_frozen_and_deterministic(tiny_dir, backend):
    holder = nn.Module()
    holder.image_encoder = FrozenImageEncoder(tiny_dir / backend, backend=backend)
    assert list(holder.parameters()) == [] and list(holder.state_dict()) == []
    holder.train()
    assert all(not m.training for m in holder.image_encoder._frozen.values())
    x = _images().requires_grad_(True)
    with torch.enable_grad():
        tokens = holder.image_encoder(x)
    assert not tokens.requires_grad
    again = FrozenImageEncoder(tiny_dir / backend, backend=backend)(x.detach())
    assert torch.equal(tokens, again)


def test_bfloat16(tiny_dir):
    ref = FrozenImageEncoder(tiny_dir / "dit")(_images())
    half = FrozenImageEncoder(tiny_dir / "dit", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    got = half(_images())
    assert got.dtype == torch.float32
    assert (got - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_clear_errors(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory"):
        FrozenImageEncoder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="transformer/"):
        FrozenImageEncoder(tmp_path)
    broken = tmp_path / "dit"
    shutil.copytree(tiny_dir / "dit", broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model"):
        FrozenImageEncoder(broken)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        FrozenImageEncoder(tmp_path, backend="clip")
    with pytest.raises(ValueError, match="block=5"):
        FrozenImageEncoder(tiny_dir / "dit", block=5)
    with pytest.raises(ValueError, match="backend"):
        FrozenImageEncoder(tiny_dir / "dit", backend="vit")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        FrozenImageEncoder(tiny_dir / "dit")(torch.zeros(3, 64, 64))


def test_loads_the_hub_config_of_facebook_dit(tiny_dir, tmp_path):
    """facebook/DiT-XL-2-256 names the old Transformer2DModel class and its old keys; it loads the same."""
    import json

    root = tmp_path / "dit"
    shutil.copytree(tiny_dir / "dit", root)
    cfg_path = root / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    keep = ("activation_fn", "attention_bias", "attention_head_dim", "dropout", "in_channels", "norm_num_groups",
            "num_attention_heads", "num_embeds_ada_norm", "num_layers", "out_channels", "patch_size",
            "sample_size", "upcast_attention")
    hub = {"_class_name": "Transformer2DModel", "_diffusers_version": "0.12.0.dev0", "cross_attention_dim": None,
           "num_vector_embeds": None, "only_cross_attention": False, "use_linear_projection": False,
           **{k: cfg[k] for k in keep}}
    cfg_path.write_text(json.dumps(hub))
    torch.testing.assert_close(FrozenImageEncoder(root)(_images()), FrozenImageEncoder(tiny_dir / "dit")(_images()))
