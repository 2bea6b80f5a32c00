"""Injected NaN losses: the step is skipped (weights and optimizer state untouched), counted as
`train/nonfinite_steps`, and K in a row stop training with a clear error while the last good checkpoint stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from wantrain.commands.instantiate import build_trainer
from wantrain.training.nonfinite import NonFiniteError

COMMON = ["data.num_workers=0", "data.batch_size=2", "data.samples_per_epoch=64", "trainer.limit_val_batches=0",
          "logger=csv", "callbacks.model_checkpoint.every_n_train_steps=1", "trainer.log_every_n_steps=1",
          "model.max_nonfinite_steps=3", "print_config=false", "run_name=nan"]
BAD = {2, 5, 6, 7}  # global steps whose loss is NaN: one isolated, then three in a row (= the limit)


class Snapshots(pl.Callback):
    """Trainable weights and the optimizer's step counts after every batch, keyed by global_step."""

    def __init__(self, module_names: tuple[str, ...]) -> None:
        self.module_names, self.weights, self.opt_steps = module_names, {}, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        self.weights[step] = {f"{m}.{k}": v.detach().clone() for m in self.module_names
                              for k, v in getattr(pl_module, m).state_dict().items()}
        self.opt_steps[step] = [float(s["step"]) for s in trainer.optimizers[0].state.values() if "step" in s][:1]


def fit_until_error(cfg, model, snapshots):
    trainer = build_trainer(cfg, extra_callbacks=[snapshots], enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteError, match=r"3 optimizer steps in a row had NaN/inf .*gradients \(last at step 7\).*"
                                             r"model.max_nonfinite_steps=3"):
        trainer.fit(model, datamodule=instantiate(cfg.data))
    return trainer


def check_skips_and_last_good_checkpoint(cfg, snapshots, trainer, prefix: str) -> None:
    w = snapshots.weights
    assert sorted(w) == list(range(1, 8)), sorted(w)  # batches of steps 0..6 ended; step 7 raised
    changed = lambda a, b: any(not torch.equal(w[a][k], w[b][k]) for k in w[a])  # noqa: E731
    assert changed(1, 2) and changed(3, 4) and changed(4, 5)  # good steps update the weights
    assert not changed(2, 3)  # step 2 (NaN) skipped: weights untouched ...
    assert not changed(5, 6) and not changed(5, 7)  # ... and steps 5, 6
    assert snapshots.opt_steps[3] == snapshots.opt_steps[2] and snapshots.opt_steps[7] == snapshots.opt_steps[5]
    assert trainer.callback_metrics["train/nonfinite_steps"] == 3  # 2, 5, 6 counted; 7 raised before logging
    ckpt_dir = Path(cfg.run_dir) / "checkpoints"
    for path in ckpt_dir.glob("*.ckpt"):  # every checkpoint loads without unpickling
        torch.load(path, map_location="cpu", weights_only=True)
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 7
    for key, value in w[5].items():  # = the weights after the last good update (step 4)
        assert torch.equal(last["state_dict"][f"{prefix}{key}"], value), key
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow  # a fit of the diffusion stage until it stops (10-15 s)
def test_diffusion_stage_skips_nan_steps_then_stops(compose, data_dir, tmp_path):
    cfg = compose(f"paths.data_dir={data_dir}", *COMMON, "trainer.max_steps=20", root=tmp_path)
    model = instantiate(cfg.model)
    real = model.model.loss

    def poisoned(video, cond, **kwargs):  # a NaN loss on the BAD steps, through the real forward/backward
        losses, t = real(video, cond, **kwargs)
        return (losses * float("nan") if model.training and model.global_step in BAD else losses), t

    model.model.loss = poisoned
    snapshots = Snapshots(("unet", "fusion"))
    trainer = fit_until_error(cfg, model, snapshots)
    check_skips_and_last_good_checkpoint(cfg, snapshots, trainer, prefix="model.")


def test_upsampler_stage_skips_nan_steps_then_stops(compose, data_dir, tmp_path):
    cfg = compose("+experiment=sr_tiny", f"paths.data_dir={data_dir}", *COMMON, "trainer.max_steps=20",
                  "data.num_frames=2", "data.resolution=32", "model.crop_size=16", "model.gan.warmup_batches=0",
                  "model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8",
                  root=tmp_path)
    model = instantiate(cfg.model)
    real = model.content_loss.forward

    def poisoned(sr, hr):  # NaN content loss on the BAD batches (G's update); D then sees finite fakes
        loss, parts = real(sr, hr)
        return (loss * float("nan") if model.batches in BAD else loss), parts

    model.content_loss.forward = poisoned
    snapshots = Snapshots(("generator",))
    trainer = fit_until_error(cfg, model, snapshots)
    check_skips_and_last_good_checkpoint(cfg, snapshots, trainer, prefix="")


DDP_SCRIPT = """
import json, sys
import pytorch_lightning as pl
import torch


class Record(pl.Callback):  # every rank's UNet weights after each batch, and its skip count
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        weights = {k: v.flatten()[:8].tolist() for k, v in module.unet.state_dict().items()}
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}-step{trainer.global_step}.json", "w") as f:
            json.dump({"weights": weights, "skipped": module.nonfinite[""].total}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    from hydra import compose, initialize_config_dir
    from wantrain.commands import fit
    from wantrain.commands.launch import prepare_launch
    from wantrain.config_tree import config_dir
    from wantrain.training.video_diffusion import VideoDiffusionModule

    real = VideoDiffusionModule.training_step

    def poisoned(self, batch, batch_idx):  # NaN on rank 1 only, at step 2
        loss = real(self, batch, batch_idx)
        return loss * float("nan") if self.global_rank == 1 and self.global_step == 2 else loss

    VideoDiffusionModule.training_step = poisoned
    prepare_launch()
    build = fit.build_trainer
    fit.build_trainer = lambda cfg, extra_callbacks=None, **kw: build(cfg, [*(extra_callbacks or []), Record()], **kw)
    root, data_dir = sys.argv[1], sys.argv[2]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"paths.root_dir={root}", f"paths.data_dir={data_dir}", "trainer=ddp_cpu", "logger=csv",
            "print_config=false", "data.batch_size=2", "data.samples_per_epoch=16", "data.num_workers=0",
            "trainer.limit_val_batches=0", "model.sampling.every_n_steps=0", "trainer.max_steps=4", "run_name=nan-ddp"])
    fit.run(cfg)
"""


@pytest.mark.ddp
@pytest.mark.slow
def test_nan_on_one_ddp_rank_skips_the_step_on_both(python_script, data_dir, tmp_path):
    import json

    proc = python_script(DDP_SCRIPT, tmp_path, str(tmp_path), str(data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = {(r, s): json.loads((tmp_path / f"rank{r}-step{s}.json").read_text()) for r in (0, 1) for s in (1, 2, 3, 4)}
    for s in (1, 2, 3, 4):  # the ranks stay in sync through the skipped step
        assert seen[0, s]["weights"] == seen[1, s]["weights"], s
    assert seen[0, 3]["weights"] == seen[0, 2]["weights"]  # step 2 (NaN on rank 1 only) skipped on both ranks
    assert seen[0, 2]["weights"] != seen[0, 1]["weights"] and seen[0, 4]["weights"] != seen[0, 3]["weights"]
    assert [seen[r, 4]["skipped"] for r in (0, 1)] == [1, 1]
    last = torch.load(tmp_path / "runs" / "nan-ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4 and all(torch.isfinite(v).all() for v in last["state_dict"].values()
                                            if v.is_floating_point())
