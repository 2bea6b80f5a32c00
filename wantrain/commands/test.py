"""`python -m wantrain test ckpt=PATH`: evaluate a diffusion or upsampler checkpoint on a shard set."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wantrain.errors import WantrainError
from wantrain.evaluation.report import print_metrics, write_json
from wantrain.inference.checkpoints import DIFFUSION, SavedModel, read_saved
from wantrain.ranks import pick_device

DATAMODULE = "wantrain.training.datamodule.VideoShardDataModule"


def data_config(saved: SavedModel, overrides: DictConfig) -> dict[str, Any]:
    """The checkpoint's data config (no synthetic generation) with the non-null `data.*` keys of the command line."""
    if saved.run is not None:
        data = copy.deepcopy(dict(saved.run.get("data") or {}))
    else:  # an exported model: only its clip size is known
        data = {"_target_": DATAMODULE, "num_frames": saved.config.get("num_frames", 16),
                "resolution": saved.config.get("resolution", 64), "train_shards": None, "val_shards": None}
    data.pop("synthetic", None)
    data.update({k: v for k, v in OmegaConf.to_container(overrides, resolve=True).items() if v is not None})
    if not data.get("test_shards") and not data.get("val_shards"):
        raise WantrainError("no shards to evaluate on: pass data.test_shards=SPEC (or data.val_shards=SPEC)")
    data.setdefault("_target_", DATAMODULE)
    return data


def test_diffusion(cfg: DictConfig, saved: SavedModel, data: dict[str, Any]) -> dict[str, Any]:
    """Loss per timestep bucket, first-frame PSNR, temporal consistency (+ FVD) in plain PyTorch."""
    from wantrain.evaluation.diffusion import evaluate_diffusion
    from wantrain.evaluation.fvd import load_i3d
    from wantrain.evaluation.video_quality import VideoQuality
    from wantrain.inference.base import BaseModel

    d = cfg.diffusion
    device = pick_device(cfg.device)
    model = BaseModel.from_saved(saved, d.text_encoder, d.image_encoder).to(device)
    i3d = load_i3d(d.i3d_weights, device) if d.i3d_weights else None
    settings = model.settings(sampler=d.sampler, num_steps=d.steps, text_scale=d.text_scale,
                              image_scale=d.image_scale, eta=d.eta)
    video_metrics = OmegaConf.to_container(d.video_metrics, resolve=True) if d.get("video_metrics") else {}
    if not video_metrics.get("fps") and isinstance(data.get("fps"), (int, float)):  # the clips' rate, if one
        video_metrics["fps"] = data["fps"]
    quality = VideoQuality(**video_metrics, device=str(device))
    loader = instantiate(data).test_dataloader()
    metrics = evaluate_diffusion(model, loader, num_videos=int(d.num_videos), seed=int(cfg.seed),
                                 limit_batches=cfg.limit_batches, i3d=i3d, quality=quality, **settings)
    return {"metrics": metrics, "settings": settings, "metric_weights": quality.weights(metrics)}


def test_upsampler(cfg: DictConfig, saved: SavedModel, data: dict[str, Any]) -> dict[str, Any]:
    """PSNR/SSIM (RGB and Y), temporal error (+ LPIPS, tLP) of the stage and of bicubic, via Lightning's test loop."""
    import pytorch_lightning as pl

    from wantrain.config_tree import auto_precision

    if saved.run is None:
        raise WantrainError(f"{saved.source}: testing an upsampler stage needs its .ckpt (with the run config)")
    node = copy.deepcopy(saved.run["model"])
    node["content_loss"] = {"_target_": "torch.nn.Identity"}  # not used by the test step; needs no VGG weights
    node["export_dir"] = None
    u = cfg.upsampler
    node["validation"] = {**(node.get("validation") or {}), "use_ema": True, "lpips": OmegaConf.to_container(u.lpips)
                          if isinstance(u.lpips, DictConfig) else u.lpips, "tile": u.tile, "crop_size": u.crop_size}
    module = instantiate(node)
    for net in (module.generator, module.ema.module):  # the chosen weights (EMA or raw) in both
        net.load_state_dict(saved.state, strict=True)
    accelerator = "cpu" if str(cfg.device) == "cpu" else "auto"
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=cfg.run_dir,
                         limit_test_batches=cfg.limit_batches or 1.0, precision=auto_precision())
    results = trainer.test(module, datamodule=instantiate(data), verbose=False)[0]
    metrics = {k[len("test/"):]: float(v) for k, v in results.items() if not k.endswith("_bicubic")}
    baseline = {k[len("test/"):-len("_bicubic")]: float(v) for k, v in results.items() if k.endswith("_bicubic")}
    return {"metrics": metrics, "baseline": baseline}


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Evaluate `cfg.ckpt`, print the table and write RUN_DIR/metrics.json (and `out` when set)."""
    torch.manual_seed(int(cfg.seed))
    saved = read_saved(cfg.ckpt, "ckpt", bool(cfg.use_ema))
    data = data_config(saved, cfg.data)
    instantiate(data).check_shards(("test_shards",) if data.get("test_shards") else ("val_shards",))  # preflight
    start = time.time()
    result = (test_diffusion if saved.kind == DIFFUSION else test_upsampler)(cfg, saved, data)
    shards = data.get("test_shards") or data.get("val_shards")
    what = f"upsampler sr_stage{saved.config['stage']}" if saved.kind != DIFFUSION else "diffusion model"
    report = {"checkpoint": saved.source, "model": saved.kind, "weights": saved.weights_kind,
              "global_step": saved.config.get("source", {}).get("global_step"), "shards": shards,
              "seconds": round(time.time() - start, 2), **result}
    if saved.kind != DIFFUSION:
        report["stage"] = int(saved.config["stage"])
    title = f"wantrain test: {what}, {saved.weights_kind} weights, {Path(saved.source).name}"
    print_metrics(title, result["metrics"], result.get("baseline"), result.get("metric_weights"))
    paths = [write_json(Path(cfg.run_dir) / "metrics.json", report)]
    if cfg.out:
        paths.append(write_json(cfg.out, report))
    print("wrote " + ", ".join(str(p) for p in paths))
