"""LoRA fine-tunes (peft): few trainable parameters, merged export == unmerged model, the adapters alone as a
safetensors file with peft/diffusers names that loads onto the base and gives the same clip, exact resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file
from test_init_from import compose_at, fresh_module, perturb, save_like_fit

from wantrain.commands import fit
from wantrain.diffusion.model import Conditions
from wantrain.diffusion.space import PIXELS
from wantrain.inference.base import BaseModel
from wantrain.inference.checkpoints import apply_lora_file, build_diffusion, load_weights, read_saved
from wantrain.inference.pipeline import load_pipeline
from wantrain.training.init_weights import init_weights

SMALL = ["data.num_frames=4", "data.resolution=16", "model.unet.model_channels=16", "model.sampling.every_n_steps=0",
         "data.batch_size=2", "data.samples_per_epoch=8", "trainer.limit_val_batches=1", "logger=csv",
         "print_config=false", "trainer.max_steps=4", "model.sampling.num_steps=3"]
LORA = ["model.lora.rank=4", "model.lora.alpha=8"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, data_dir):
    """A base model saved as `fit` does, and a LoRA fine-tune of it (adapters moved off zero, EMA apart)."""
    root = tmp_path_factory.mktemp("lora")
    overrides = [f"paths.data_dir={data_dir}", *SMALL]
    torch.manual_seed(0)
    base = instantiate(compose_at(root, *overrides).model)
    perturb(base.ema, 0.05, 1)
    base_path = save_like_fit(base, compose_at(root, *overrides), root / "base.ckpt")
    tuned = fresh_module(root, overrides, *LORA)
    report = init_weights(tuned, base_path)
    for net, seed in ((tuned.model, 2), (tuned.ema.module, 3)):
        perturb(torch.nn.ParameterList([p for n, p in net.named_parameters() if ".lora_" in n]), 0.1, seed)
    tuned_path = save_like_fit(tuned, compose_at(root, *overrides, *LORA), root / "lora.ckpt")
    return root, overrides, tuned.eval(), base_path, tuned_path, report


def clip(model, seeds=(0, 1)) -> torch.Tensor:
    """A sampled clip (2, 3, 4, 16, 16) from fixed random conditions (3 DDIM steps)."""
    g = torch.Generator().manual_seed(5)
    b = len(seeds)
    cond = Conditions(torch.randn(b, 6, 32, generator=g), torch.ones(b, 6, dtype=torch.bool),
                      torch.randn(b, 5, 32, generator=g), PIXELS.first_frames(torch.rand(b, 3, 16, 16, generator=g), 4))
    with torch.no_grad():
        return model.sample_from_seeds(cond, list(seeds), sampler="ddim", num_steps=3, eta=0.0, text_scale=2.0,
                                       image_scale=1.5)


def test_lora_trains_few_parameters_and_merges_exactly(lora_run, tmp_path, wantrain_main):
    root, overrides, tuned, base_path, tuned_path, report = lora_run
    adapters = [n for n in tuned.model.state_dict() if ".lora_" in n]
    assert sorted(report.fresh) == sorted(adapters) and not (report.missing or report.unexpected)
    assert len(report.loaded) == len(torch.load(base_path, weights_only=True)["state_dict"]) // 2  # model.* of 2
    trainable = sum(p.numel() for p in tuned.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in tuned.model.parameters())
    assert all(".lora_" in n for n, p in tuned.model.named_parameters() if p.requires_grad)
    assert 0 < trainable < 0.05 * total, (trainable, total)

    saved = read_saved(tuned_path)  # EMA weights, adapters merged
    assert not any(".lora_" in k or "base_layer" in k for k in saved.state) and saved.lora["settings"]["rank"] == 4
    merged = load_weights(build_diffusion(saved.config), saved.state, "merged")
    unmerged = clip(tuned.ema.module)
    base = load_weights(build_diffusion(saved.config), read_saved(base_path).state, "base")
    assert (unmerged - clip(base)).abs().max() > 1e-3  # the adapters change the clip
    torch.testing.assert_close(clip(merged), unmerged, rtol=0, atol=1e-5)

    out = tmp_path / "export"
    assert wantrain_main(["sample", f"base_ckpt={tuned_path}", f"export={out}", "export_lora=true"], tmp_path) == 0
    exported = load_file(out / "base" / "model.safetensors")
    assert all(torch.equal(exported[k], v) for k, v in saved.state.items())
    lora_file = out / "lora" / "pytorch_lora_weights.safetensors"
    names = list(load_file(lora_file))
    peft_names = [n for n in names if n.startswith("unet.") and n.endswith((".lora_A.weight", ".lora_B.weight"))]
    assert len(peft_names) == len(names) == len(adapters), names[:3]
    assert json.loads((out / "lora" / "adapter_config.json").read_text())["r"] == 4

    on_base = apply_lora_file(read_saved(base_path), lora_file)  # base checkpoint + LoRA file
    for key, value in saved.state.items():
        torch.testing.assert_close(on_base.state[key], value, rtol=0, atol=1e-6)
    pipe_lora = load_pipeline(base_path, lora=lora_file).base
    assert isinstance(pipe_lora, BaseModel)
    torch.testing.assert_close(clip(pipe_lora.model), unmerged, rtol=0, atol=1e-5)

    image = tmp_path / "first.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 40, 40)).save(image)
    assert wantrain_main(["sample", f"base_ckpt={base_path}", f"lora={lora_file}", f"image={image}",
                          "prompt=a red ball", f"out={tmp_path / 'lora.mp4'}", "steps=2"], tmp_path) == 0
    assert (tmp_path / "lora.mp4").stat().st_size > 0
    assert wantrain_main(["sample", f"base_ckpt={base_path}", f"export={tmp_path / 'x'}", "export_lora=true"],
                         tmp_path) == 1  # no adapters to write: one line, nothing written
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_lora_fine_tune_resumes_exactly(lora_run):
    """A LoRA fine-tune (init_from the base) interrupted at step 2 and resumed ends bitwise like the whole run."""
    root, overrides, _, base_path, _, _ = lora_run
    args = ["+experiment=i2v_tiny_lora", *overrides, *LORA, f"init_from={base_path}",
            "callbacks.model_checkpoint.every_n_train_steps=2",
            "callbacks.model_checkpoint.save_top_k=-1"]
    fit.run(compose_at(root, *args, "run_name=whole"))
    resumed = root / "runs" / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(root / "runs" / "whole" / "checkpoints" / "step0000002.ckpt", resumed)
    fit.run(compose_at(root, *args, "run_name=resumed"))
    a, b = (torch.load(root / "runs" / n / "checkpoints" / "last.ckpt", weights_only=True)
            for n in ("whole", "resumed"))
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    trained = [k for k in a["state_dict"] if k.startswith("model.") and ".lora_" in k]
    start = torch.load(resumed / "step0000002.ckpt", weights_only=True)["state_dict"]
    assert all(not torch.equal(a["state_dict"][k], start[k]) for k in trained if "lora_B" in k)
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert len(opt_a["state"]) == len(trained)
    for i, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][i][name]), (i, name)
