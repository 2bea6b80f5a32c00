"""init_from (report, strict mode, EMA/raw weights), image->video inflation (identity at step 0) and trainable groups
(frozen weights bitwise unchanged, optimizer and EMA hold only the trainable ones) with the real config and `fit`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.commands import fit
from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import read_saved
from wantrain.inference.export import write_saved
from wantrain.io.weights import save_safetensors
from wantrain.nets.trainable import name_matches
from wantrain.nets.unet import frame_condition
from wantrain.training.init_weights import init_weights

SMALL = ["data.num_frames=4", "data.resolution=16", "model.unet.model_channels=16", "model.sampling.every_n_steps=0",
         "data.batch_size=2", "data.samples_per_epoch=8", "trainer.limit_val_batches=1", "logger=csv",
         "print_config=false", "trainer.max_steps=4"]


def compose_at(root: Path, *overrides: str):
    """The real config tree as `python -m wantrain` composes it (usable from module-scoped fixtures)."""
    from hydra import compose, initialize_config_dir

    from wantrain.commands.launch import register_resolvers
    from wantrain.config_tree import config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=[f"paths.root_dir={root}", *overrides])


def save_like_fit(module: torch.nn.Module, cfg, path: Path) -> Path:
    """A checkpoint as `fit` writes it: state_dict, hyper-parameters, the run config."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 0,
                "wantrain_config": OmegaConf.to_container(cfg, resolve=True)}, path)
    return path


def perturb(net: torch.nn.Module, scale: float, seed: int) -> None:
    """Move every parameter of `net` off its init (zero-initialised output layers included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_dir):
    """A trained-looking i2v_tiny module (EMA apart from the raw weights, temporal layers non-identity) saved as
    `fit` saves it: the image model of the inflation and the source of init_from. -> (root, overrides, module, path)"""
    root = tmp_path_factory.mktemp("init_from")
    overrides = [f"paths.data_dir={data_dir}", *SMALL]
    cfg = compose_at(root, *overrides)
    torch.manual_seed(0)
    module = instantiate(cfg.model)
    perturb(module.model, 0.05, 0)
    perturb(module.ema, 0.05, 1)
    return root, overrides, module.eval(), save_like_fit(module, cfg, root / "image.ckpt")


def fresh_module(root: Path, overrides: list[str], *extra: str, seed: int = 1):
    torch.manual_seed(seed)
    return instantiate(compose_at(root, *overrides, *extra).model)


def test_report_ema_raw_mismatch_and_strict(base):
    root, overrides, source, path = base
    module = fresh_module(root, overrides)
    report = init_weights(module, path)  # EMA weights by default
    n = len(module.model.state_dict())
    assert report.text().startswith(f"init_from {path} (ema weights) -> model: loaded {n}, kept fresh 0, missing 0, "
                                    "unexpected 0, shape-mismatched 0")
    for (key, mine), theirs in zip(module.model.state_dict().items(), source.ema.module.state_dict().values()):
        assert torch.equal(mine, theirs), key
    for mine, theirs in zip(module.ema.module.state_dict().values(), source.ema.module.state_dict().values()):
        assert torch.equal(mine, theirs)  # the EMA starts from the loaded weights
    raw = fresh_module(root, overrides)
    init_weights(raw, path, use_ema=False)
    assert all(torch.equal(a, b) for a, b in zip(raw.model.state_dict().values(), source.model.state_dict().values()))
    # an exported folder, a plain .safetensors state dict, a Lightning state dict as .safetensors (model.* keys)
    export = write_saved(read_saved(path), root / "export")
    save_safetensors(source.ema.module.state_dict(), root / "plain.safetensors")
    save_safetensors(source.state_dict(), root / "lightning.safetensors")
    for other, want in ((export, source.ema.module), (root / "plain.safetensors", source.ema.module),
                        (root / "lightning.safetensors", source.ema.module)):
        module = fresh_module(root, overrides)
        assert not init_weights(module, other, strict=True).problems()
        assert all(torch.equal(a, b) for a, b in zip(module.model.state_dict().values(), want.state_dict().values()))

    # another architecture: attention at level 0 instead of 1 (missing + unexpected), wider context (shapes)
    other = ["model.unet.attention_levels=[0]", "model.unet.head_dim=16", "model.fusion.width=32"]
    report = init_weights(fresh_module(root, overrides, *other), path)
    assert report.loaded and report.missing and report.unexpected and report.mismatched
    text = report.text()
    assert "missing (fresh init): unet.down.0.spatial." in text and "unexpected (ignored): unet.down.2.spatial." in text
    assert "shape-mismatched (fresh init): " in text and " vs " in text
    with pytest.raises(WantrainError, match=r"init_strict=true\): \d+ missing .*; \d+ unexpected .*; \d+ shape-mism") \
            as err:
        init_weights(fresh_module(root, overrides, *other), path, strict=True)
    assert "\n" not in str(err.value)
    init_weights(fresh_module(root, overrides), path, strict=True)  # an exact fit passes strict mode


def test_inflation_is_identity_at_step_0(base):
    """Spatial weights from the image model, temporal layers fresh (identity): every frame of a still clip gets
    exactly what the image model gives that frame alone."""
    root, overrides, image_model, path = base
    video = fresh_module(root, overrides).eval()
    report = init_weights(video, path, fresh=["temporal"])
    assert report.fresh and all(name_matches(k, ["temporal"]) for k in report.fresh)
    assert not (report.missing or report.unexpected or report.mismatched)
    g = torch.Generator().manual_seed(3)
    b, t, size = 2, 4, 16
    still = torch.randn(b, 3, 1, size, size, generator=g).expand(-1, -1, t, -1, -1)
    first = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    concat = frame_condition(first[:, :, None].expand(-1, -1, t, -1, -1))
    width = image_model.model.unet.context_dim
    context, pooled = torch.randn(b, 5, width, generator=g), torch.randn(b, width, generator=g)
    steps = torch.tensor([10, 700])
    image_unet = image_model.ema.module.unet
    with torch.no_grad():
        frames = torch.cat([image_unet(still[:, :, i:i + 1], steps, context, None, pooled, concat[:, :, i:i + 1])
                            for i in range(t)], dim=2)
        clip = video.model.unet(still, steps, context, None, pooled, concat)
        assert frames.abs().mean() > 0.05
        torch.testing.assert_close(clip, frames, rtol=0, atol=2e-6)
        # without init_fresh the image model's (trained) temporal layers mix the frames: the check can fail
        mixed = image_unet(still, steps, context, None, pooled, concat)
        assert (mixed - frames).abs().max() > 1e-2


def val_loss(module, batch) -> float:
    """The fixed validation protocol (one timestep per bucket, fixed noise) on `batch`, raw weights."""
    with torch.no_grad():
        cond = module.conditions(batch)
        return module.model.validation_losses(module.space.encode(batch["video"]), cond,
                                              torch.Generator().manual_seed(7)).mean().item()


@pytest.mark.slow
def test_temporal_fine_tune_trains_only_temporal_layers(base, capsys):
    """Inflation recipe through `fit`: init_from the image model, temporal layers fresh and the only ones trained."""
    root, overrides, image_model, path = base
    steps = 24
    recipe = ["+experiment=i2v_tiny_inflate", f"init_from={path}", "run_name=inflate",
              f"trainer.max_steps={steps}", "callbacks.model_checkpoint.every_n_train_steps=12"]
    fit.run(compose_at(root, *overrides, *recipe))
    out = capsys.readouterr().out
    assert f"init_from {path} (ema weights) -> model: loaded " in out
    trainable = {k for k, p in fresh_module(root, overrides, "model.trainable=[temporal]").model.named_parameters()
                 if p.requires_grad}
    total = len(list(image_model.model.parameters()))
    assert trainable and all(name_matches(k, ["temporal"]) for k in trainable) and len(trainable) < total
    count = sum(p.numel() for k, p in image_model.model.named_parameters() if k in trainable)
    from pytorch_lightning.utilities.model_summary import get_human_readable_count

    assert f"model  {get_human_readable_count(count).strip():>9}" in out  # trainable count printed at start

    ckpt = torch.load(root / "runs" / "inflate" / "checkpoints" / "last.ckpt", weights_only=True)
    state, source = ckpt["state_dict"], image_model.ema.module.state_dict()
    params = dict(image_model.model.named_parameters())
    for key in params:
        if key not in trainable:  # frozen: bitwise the loaded weights, in the model and in its EMA
            assert torch.equal(state[f"model.{key}"], source[key]), key
            assert torch.equal(state[f"ema.module.{key}"], source[key]), key
    moved = [k for k in trainable if not torch.equal(state[f"model.{k}"], state[f"ema.module.{k}"])]
    assert len(moved) == len(trainable)  # the EMA averages the trained ones
    optimizer = ckpt["optimizer_states"][0]
    assert sum(len(g["params"]) for g in optimizer["param_groups"]) == len(trainable) == len(optimizer["state"])

    before = fresh_module(root, overrides, "model.trainable=[temporal]")
    init_weights(before, path, fresh=["temporal"])
    after = fresh_module(root, overrides, "model.trainable=[temporal]")
    after.load_state_dict(state)
    datamodule = instantiate(compose_at(root, *overrides).data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    for module in (before, after):
        module.encoders.load()
    start, end = val_loss(before, batch), val_loss(after, batch)
    assert end < 0.97 * start, (start, end)

    # a restart of the same run resumes its checkpoint: init_from does not re-initialise it
    fit.run(compose_at(root, *overrides, *recipe[:-2], recipe[-1], f"trainer.max_steps={steps + 2}"))
    assert "init_from ignored: resuming " in capsys.readouterr().out


SR = ["data.num_frames=2", "data.resolution=32", "model.crop_size=16", "model.generator.channels=8",
      "model.generator.num_blocks=1", "model.discriminator.channels=8", "model.validation.every_n_steps=0",
      "data.batch_size=2", "data.samples_per_epoch=8", "trainer.limit_val_batches=1", "logger=csv",
      "print_config=false", "trainer.max_steps=3"]


@pytest.mark.slow
def test_upsampler_psnr_phase_initialises_gan_phase(data_dir, tmp_path, capsys):
    """Real-ESRGAN's two phases: L1 only (D never steps), then the GAN phase from its EMA generator via init_from."""
    overrides = [f"paths.data_dir={data_dir}", *SR]
    fit.run(compose_at(tmp_path, "+experiment=sr_tiny_psnr", *overrides, "run_name=psnr"))
    psnr = torch.load(tmp_path / "runs" / "psnr" / "checkpoints" / "last.ckpt", weights_only=True)
    assert psnr["optimizer_states"][0]["state"] and not psnr["optimizer_states"][1]["state"]  # G trained, D never
    gan = [f"init_from={tmp_path / 'runs' / 'psnr'}", *overrides]
    module = instantiate(compose_at(tmp_path, "+experiment=sr_tiny_gan", *gan).model)
    init_weights(module, tmp_path / "runs" / "psnr", strict=True)
    for key, value in module.generator.state_dict().items():
        assert torch.equal(value, psnr["state_dict"][f"ema.module.{key}"]), key
    capsys.readouterr()
    fit.run(compose_at(tmp_path, "+experiment=sr_tiny_gan", *gan, "run_name=gan", "model.trainable=[-conv_in]"))
    out = capsys.readouterr().out
    n = len(module.generator.state_dict())
    assert (f"-> generator: loaded {n}, kept fresh 0, missing 0, unexpected 0, shape-mismatched 0") in out
    state = torch.load(tmp_path / "runs" / "gan" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["optimizer_states"][1]["state"]  # the discriminator trains from the first batch
    generator = [k for k, _ in module.generator.named_parameters()]
    assert len(state["optimizer_states"][0]["state"]) == len(generator) - 2  # all but conv_in.weight / .bias
    weights, start = state["state_dict"], psnr["state_dict"]
    for key in generator:  # the frozen group (a trainable group of the upsampler) stays bitwise the phase-1 weights
        frozen = key.startswith("conv_in.")
        for prefix in ("generator.", "ema.module."):
            assert torch.equal(weights[prefix + key], start[f"ema.module.{key}"]) == frozen, key
    with pytest.raises(WantrainError, match="pass init_from=PATH"):
        fit.run(compose_at(tmp_path, "+experiment=sr_tiny_gan", *overrides, "run_name=nothing"))
    assert not (tmp_path / "runs" / "nothing").exists()
