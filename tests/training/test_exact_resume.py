"""Exact resume: a run interrupted at step k and resumed with ckpt_path=auto ends with the same weights, EMA and
optimizer states as the uninterrupted run, for both stages, through the real `fit` command (in-process, CPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from wantrain.commands import fit

STEPS = 6
COMMON = ["logger=csv", "print_config=false", "data.batch_size=2", "data.samples_per_epoch=8",  # 4 batches/epoch
          "trainer.limit_val_batches=1", f"trainer.max_steps={STEPS}", "callbacks.model_checkpoint.save_top_k=-1"]
STAGES = {
    "i2v_tiny": ["data.num_frames=4", "data.resolution=16", "model.unet.model_channels=16",
                 "model.sampling.every_n_steps=0"],
    "i2v_flow_tiny": ["data.num_frames=4", "data.resolution=16", "model.unet.model_channels=16",
                      "model.sampling.every_n_steps=0"],
    # the tiny Wan VAE: 5 frames (4k+1) of 16x16 -> 4x2x2x2 latents; the UNet halves them once
    "i2v_latent_tiny": ["data.num_frames=5", "data.resolution=16", "model.unet.model_channels=16",
                        "model.sampling.every_n_steps=0"],
    "sr_tiny": ["data.num_frames=2", "data.resolution=32", "model.crop_size=16", "model.gan.warmup_batches=2",
                "model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8",
                "model.validation.every_n_steps=0"],
}


def interrupted_and_whole(compose, data_dir: Path, root: Path, stage: str, workers: int, k: int) -> tuple[dict, dict]:
    """Run A uninterrupted (checkpoints every k steps); run B starts from A's step-k checkpoint found in its own
    run directory by ckpt_path=auto, as a requeued job does. Returns both final checkpoints."""
    overrides = [f"+experiment={stage}", f"paths.data_dir={data_dir}", *COMMON, *STAGES[stage],
                 f"data.num_workers={workers}", f"callbacks.model_checkpoint.every_n_train_steps={k}"]
    fit.run(compose(*overrides, "run_name=whole", root=root))
    step_k = root / "runs" / "whole" / "checkpoints" / f"step{k:07d}.ckpt"
    assert torch.load(step_k, weights_only=True)["global_step"] == k
    resumed_dir = root / "runs" / "resumed" / "checkpoints"
    resumed_dir.mkdir(parents=True)
    shutil.copy(step_k, resumed_dir / step_k.name)  # what the interrupted run left behind
    fit.run(compose(*overrides, "run_name=resumed", root=root))
    return tuple(torch.load(root / "runs" / name / "checkpoints" / "last.ckpt", weights_only=True)
                 for name in ("whole", "resumed"))


def assert_same(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors equal to within 1e-6 (bitwise in practice)."""
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape, where
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=lambda m: f"{where}: {m}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def compose_module_scope(*overrides: str, root: Path):
    """The `compose` fixture's function, usable from a module-scoped fixture."""
    from hydra import compose, initialize_config_dir

    from wantrain.commands.launch import register_resolvers
    from wantrain.config_tree import config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=[f"paths.root_dir={root}", *overrides])


@pytest.fixture(scope="module", params=["i2v_tiny", "i2v_flow_tiny", "i2v_latent_tiny"])
def diffusion_runs(request, data_dir, tmp_path_factory):
    """The experiment with one loader worker, interrupted mid-epoch at step 3 (epoch 0 has 4 batches), 6 steps."""
    return interrupted_and_whole(compose_module_scope, data_dir, tmp_path_factory.mktemp("i2v"), request.param, 1, 3)


def test_diffusion_weights_and_optimizer_resume_exactly(diffusion_runs):
    whole, resumed = diffusion_runs
    assert whole["global_step"] == resumed["global_step"] == STEPS
    trained = {k: v for k, v in whole["state_dict"].items() if not k.startswith("ema.")}
    assert trained and all(k.startswith(("model.unet.", "model.fusion.")) for k in trained)
    assert_same(trained, {k: resumed["state_dict"][k] for k in trained}, "state_dict")
    assert_same(whole["optimizer_states"], resumed["optimizer_states"], "optimizer")
    assert_same(whole["lr_schedulers"], resumed["lr_schedulers"], "lr_scheduler")
    assert_same(whole["loops"]["fit_loop"]["state_dict"], resumed["loops"]["fit_loop"]["state_dict"], "data position")


def test_diffusion_ema_resumes_exactly(diffusion_runs):
    whole, resumed = diffusion_runs
    ema = {k: v for k, v in whole["state_dict"].items() if k.startswith("ema.")}
    assert_same(ema, {k: resumed["state_dict"][k] for k in ema}, "ema")


@pytest.mark.parametrize("workers,k", [(0, 3), (1, 4)])  # mid-epoch; at the end of epoch 0 (validation next)
def test_upsampler_resumes_exactly(compose, data_dir, tmp_path, workers, k):
    whole, resumed = interrupted_and_whole(compose, data_dir, tmp_path, "sr_tiny", workers, k)
    assert whole["global_step"] == resumed["global_step"] == STEPS
    assert whole["upsampler_counters"] == resumed["upsampler_counters"]
    assert any(k.startswith("discriminator.") for k in whole["state_dict"])
    assert_same(whole["state_dict"], resumed["state_dict"], "state_dict")  # G, D (spectral-norm buffers), EMA of G
    assert_same(whole["optimizer_states"], resumed["optimizer_states"], "optimizers")
