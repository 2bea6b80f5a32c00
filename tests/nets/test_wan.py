"""The Wan DiT backbone: a tiny random Wan2.1 I2V folder in the Hub layout, loaded on meta and filled; wantrain's
prediction equals a direct `WanTransformer3DModel` call with the inputs `WanImageToVideoPipeline` builds."""

from __future__ import annotations

import json

import pytest
import torch

from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.errors import WantrainError
from wantrain.nets.wan import WAN_TEXT_LENGTH, WanDenoiser


def test_folder_has_the_hub_layout_and_loads_with_a_full_report(wan_dir) -> None:
    index = json.loads((wan_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "image_encoder", "image_processor", "scheduler"):
        assert part in index and (wan_dir / part).is_dir(), part
    net = WanDenoiser(path=wan_dir)
    report = net.load_report
    assert report.loaded and not (report.missing or report.unexpected or report.mismatched)
    assert len(report.loaded) == len(net.transformer.state_dict())
    assert not any(p.is_meta for p in net.parameters())
    assert (net.in_channels, net.concat_channels, net.downscale) == (4, 8, 2)


def test_incomplete_folder_is_one_line(wan_dir, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "transformer"
    broken.mkdir()
    (broken / "config.json").write_text((wan_dir / "transformer" / "config.json").read_text())
    state = load_file(str(wan_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
    state.pop(sorted(state)[0])
    save_file(state, str(broken / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(WantrainError, match="does not fit its own config.json: 1 missing"):
        WanDenoiser(path=broken)


def test_prediction_equals_the_pipeline_call(wan_dir) -> None:
    """(latents, t, conditions) through the core == transformer(cat([latents, mask, first latents]), t, text, image)
    as pipeline_wan_i2v.py builds them: mask 1 on latent frame 0 (4 channels), text zero after the prompt."""
    net = WanDenoiser(path=wan_dir)
    model = VideoDiffusion(None, None, FlowMatching(), net=net).eval()
    g = torch.Generator().manual_seed(0)
    b, c, t, h, w = 2, 4, 3, 4, 4
    x_t = torch.randn(b, c, t, h, w, generator=g)
    first = torch.randn(b, c, t, h, w, generator=g)
    text = torch.randn(b, WAN_TEXT_LENGTH, 32, generator=g)
    mask = torch.zeros(b, WAN_TEXT_LENGTH, dtype=torch.bool)
    mask[0, :7], mask[1, :3] = True, True
    image = torch.randn(b, 17, 32, generator=g)
    image_frames = torch.tensor([True, False, False])
    cond = Conditions(text * mask[..., None], mask, image, first, None, image_frames)
    steps = torch.tensor([999.0, 500.0])
    with torch.no_grad():
        ours = model(x_t, steps, cond)
        lat_mask = torch.zeros(b, 4, t, h, w)
        lat_mask[:, :, 0] = 1.0
        direct = net.transformer(torch.cat([x_t, lat_mask, first], dim=1), steps, encoder_hidden_states=text * mask[
            ..., None], encoder_hidden_states_image=image, return_dict=False)[0]
        dropped = model(x_t, steps, cond, drop_text=torch.tensor([True, False]))
    torch.testing.assert_close(ours, direct, rtol=0, atol=1e-5)
    assert not torch.allclose(dropped[0], ours[0]) and torch.allclose(dropped[1], ours[1], atol=1e-6)


def test_unpadded_text_is_padded_with_zeros_to_512(wan_dir) -> None:
    """Cached text states come without their padding: the prediction equals that of the 512 zero-padded states
    (what the pipeline encodes); longer text is one line."""
    net = WanDenoiser(path=wan_dir).eval()
    g = torch.Generator().manual_seed(1)
    short, mask = torch.randn(1, 7, 32, generator=g), torch.ones(1, 7, dtype=torch.bool)
    padded = torch.cat([short, torch.zeros(1, WAN_TEXT_LENGTH - 7, 32)], 1)
    padded_mask = torch.cat([mask, torch.zeros(1, WAN_TEXT_LENGTH - 7, dtype=torch.bool)], 1)
    image, frames = torch.randn(1, 17, 32, generator=g), torch.randn(1, 4, 3, 4, 4, generator=g)
    x, t, off = torch.randn(1, 4, 3, 4, 4, generator=g), torch.tensor([500.0]), torch.zeros(1, dtype=torch.bool)
    with torch.no_grad():
        a = net(x, t, Conditions(short, mask, image, frames), off, off)
        b = net(x, t, Conditions(padded, padded_mask, image, frames), off, off)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    long = Conditions(torch.zeros(1, 600, 32), torch.ones(1, 600, dtype=torch.bool), image, frames)
    with pytest.raises(ValueError, match="max_length=512"):
        net(x, t, long, off, off)


def test_second_expert_of_a_two_expert_folder(wan_dir, tmp_path) -> None:
    """A Wan2.2 A14B-style folder (transformer/ high noise, transformer_2/ low noise): subfolder picks the expert."""
    import shutil

    folder = tmp_path / "two-experts"
    shutil.copytree(wan_dir, folder)
    second = WanDenoiser(path=wan_dir).transformer
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.5)
    second.save_pretrained(str(folder / "transformer_2"))
    high, low = WanDenoiser(path=folder), WanDenoiser(path=folder, subfolder="transformer_2")
    assert low.load_report.source.endswith("transformer_2") and not low.load_report.missing
    name, weight = next(iter(low.transformer.state_dict().items()))
    torch.testing.assert_close(weight, high.transformer.state_dict()[name] + 0.5)


def test_cond_aug_noises_the_backbones_conditioning_in_training(wan_dir) -> None:
    """model.cond_aug with the Wan backbone: the latent frame carrying the image is noised in training (CogVideoX's
    untold image noise; the UNet is told the level instead), the others are not, and sampling sees it clean."""
    from wantrain.diffusion.cond_aug import CondAug

    net = WanDenoiser(path=wan_dir).eval()
    model = VideoDiffusion(None, None, FlowMatching(), net=net, cond_aug=CondAug(log_mean=0.0, log_std=0.1))
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[2].frames.clone()))
    g = torch.Generator().manual_seed(0)
    cond = Conditions(torch.randn(1, 7, 32, generator=g), torch.ones(1, 7, dtype=torch.bool),
                      torch.randn(1, 17, 32, generator=g), torch.randn(1, 4, 3, 4, 4, generator=g), None,
                      torch.tensor([True, False, False]))
    with torch.no_grad():
        model.loss(torch.randn(1, 4, 3, 4, 4, generator=g), cond, torch.tensor([500.0]), g, dropout=False)
        model.sample(cond, torch.randn(1, 4, 3, 4, 4, generator=g), sampler="euler", num_steps=1)
    trained, sampled = seen[0], seen[-1]
    assert (trained[:, :, 0] - cond.frames[:, :, 0]).abs().mean() > 0.1  # noised at a level around exp(0) = 1
    torch.testing.assert_close(trained[:, :, 1:], cond.frames[:, :, 1:])
    torch.testing.assert_close(sampled, cond.frames)


def test_float8_storage_of_a_lora_base_keeps_its_prediction_and_trains_the_adapters(wan_dir) -> None:
    """model.net.storage_dtype=float8_e4m3fn (diffusers' layerwise casting): the frozen linear weights take 1 byte,
    each layer runs in bf16, the prediction stays near the bf16 one, and LoRA adapters get gradients."""
    from wantrain.nets.lora import add_lora, lora_settings

    g = torch.Generator().manual_seed(0)
    b, c, t, h, w = 1, 4, 3, 4, 4
    x_t, first = torch.randn(b, c, t, h, w, generator=g), torch.randn(b, c, t, h, w, generator=g)
    cond = Conditions(torch.randn(b, 7, 32, generator=g), torch.ones(b, 7, dtype=torch.bool),
                      torch.randn(b, 17, 32, generator=g), first, None, torch.tensor([True, False, False]))
    steps = torch.tensor([500.0])
    out = {}
    for storage in (None, "float8_e4m3fn"):
        net = WanDenoiser(path=wan_dir, dtype="bfloat16", storage_dtype=storage)
        model = VideoDiffusion(None, None, FlowMatching(), net=net)
        add_lora(model.denoiser, lora_settings(rank=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        out[storage] = model(x_t, steps, cond).float()
        dtypes = {p.dtype for n, p in net.named_parameters() if n.endswith("to_q.base_layer.weight")}
    assert dtypes == {torch.float8_e4m3fn}
    out["float8_e4m3fn"].square().mean().backward()
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and all(p.grad is not None and p.dtype == torch.float32 for p in lora)
    error = (out["float8_e4m3fn"] - out[None]).norm() / out[None].norm()
    assert error < 0.1, error  # e4m3 keeps ~2 significant digits of each weight
