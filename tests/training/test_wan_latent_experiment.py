"""The full-size Wan2.1-style latent experiment (`i2v_wan_latent`) composes and fits one batch at CPU width."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate


def test_one_batch_of_the_wan_latent_experiment_fits_on_cpu(compose, data_dir, tmp_path):
    """i2v_wan_latent's structure (Wan VAE with 16 latent channels, umT5, 3 UNet levels, flow matching with shift 5,
    zero-padded first-frame latents, UniPC sampling) with a tiny random 16-channel AutoencoderKLWan and umT5 built
    offline, 5 frames of 32x32 (the UNet's downscale 4 x the VAE's 8) at CPU width."""
    from wantrain.encoders.tiny import build_tiny_wan_vae

    vae = build_tiny_wan_vae(tmp_path / "tiny-wan-vae-16", z_dim=16)  # Wan2.1's 16 latent channels
    cfg = compose(
        "+experiment=i2v_wan_latent", f"paths.data_dir={data_dir}", "trainer=cpu", "data.num_workers=0",
        "data.batch_size=1", "data.num_frames=5", "data.resolution=32",
        f"data.train_shards={data_dir}/synthetic/train-00000.tar",
        f"data.val_shards={data_dir}/synthetic/val-00000.tar",
        "model.build_tiny_encoders=true", f"model.text_encoder.path={tmp_path}/tiny-umt5",  # built on first use
        f"model.image_encoder.path={data_dir}/encoders/tiny-dit", f"model.vae.path={vae}",
        "model.text_encoder.dtype=float32", "model.image_encoder.dtype=float32", "model.vae.dtype=float32",
        "model.image_encoder.block=-1", "model.fusion.text_dim=32", "model.fusion.image_dim=32",
        "model.fusion.width=64", "model.fusion.num_heads=4", "model.unet.model_channels=16",
        "model.unet.norm_groups=8", "model.unet.head_dim=16", root=tmp_path)
    model = instantiate(cfg.model)
    assert model.hparams.objective == "flow" and model.hparams.space == "latent"
    assert model.model.schedule.shift == 5.0 and model.sampling["sampler"] == "unipc" and model.sampling["shift"] == 3.0
    assert model.model.cond_aug is not None and model.sampling["guidance_rescale"] == 0.0  # from i2v_64 / Wan
    assert (model.unet.in_channels, model.unet.concat_channels, model.unet.downscale) == (16, 17, 4)
    trainer = pl.Trainer(accelerator="cpu", devices=1, fast_dev_run=True, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    assert trainer.state.finished and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model.encoders.text.dim == 32 and type(model.encoders.text.model).__name__ == "UMT5EncoderModel"
    assert model.space.shape(5, 32, 32) == (16, 2, 4, 4)


def test_wan_latent_samples_480p_i2v_with_wan21s_shift(compose, tmp_path):
    """Wan2.1 `generate.py` (`_validate_args`): sample_shift 3.0 for i2v at 832*480, 40 UniPC steps; the training
    shift stays 5 (DiffSynth-Studio's Wan training scheduler)."""
    from wantrain.diffusion.flow import FlowMatching
    from wantrain.diffusion.sampling import sampling_options

    cfg = compose("+experiment=i2v_wan_latent", "data.train_shards=x.tar", root=tmp_path)
    assert list(cfg.data.resolution) == [480, 832] and cfg.data.num_frames == 81
    assert cfg.model.flow.shift == 5.0
    options = sampling_options(cfg.model.sampling, FlowMatching.samplers)
    assert (options["sampler"], options["num_steps"], options["shift"]) == ("unipc", 40, 3.0)
    scheduler = FlowMatching(shift=cfg.model.flow.shift).sampler(options["sampler"], shift=options["shift"])
    assert scheduler.config.flow_shift == 3.0
