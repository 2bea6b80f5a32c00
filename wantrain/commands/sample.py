"""`python -m wantrain sample`: image + prompt to an mp4 through the base model and the upsampler cascade; export."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wantrain.errors import WantrainError
from wantrain.inference.base import BaseModel
from wantrain.inference.cascade import SRStage
from wantrain.inference.checkpoints import apply_lora_file, read_saved
from wantrain.inference.diffusers_export import export_diffusers
from wantrain.inference.export import export_pipeline
from wantrain.inference.jobs import Job, my_share, read_jobs
from wantrain.inference.media import read_image, write_grid
from wantrain.inference.pipeline import ImageToVideoPipeline, load_pipeline
from wantrain.io.mp4 import write_mp4
from wantrain.nets.lora import LORA_FILE, save_lora
from wantrain.nets.wan_lora import COMFYUI_FILE, save_original_wan_lora
from wantrain.ranks import pick_device, process_rank


def _list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPUs (`auto` where supported, or `bf16`); full precision otherwise (the values: the schema,
    config_schema/commands.py)."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def export(cfg: DictConfig) -> Path:
    """Check that the models load and chain, then write them to `cfg.export` (base/, sr_stageN/: config.json +
    model.safetensors each)."""
    base = read_saved(cfg.base_ckpt, "base_ckpt", cfg.use_ema)
    if cfg.get("lora"):
        base = apply_lora_file(base, cfg.lora)
    if cfg.get("export_lora") and base.lora is None:
        raise WantrainError(f"export_lora=true: {cfg.base_ckpt} is no LoRA fine-tune (model.lora.rank was null) "
                            "and no lora=FILE was given; there are no adapters to write")
    merged = " (LoRA merged)" if base.lora is not None else ""
    if cfg.get("format", "wantrain") == "diffusers":
        if cfg.sr_ckpts:
            raise WantrainError("format=diffusers writes the base model's diffusers pipeline; the upsampler stages "
                                "have none: drop sr_ckpts (export them with format=wantrain)")
        out = export_diffusers(base, cfg.export)
        print(f"exported the base model{merged} as a diffusers pipeline to {out} (load with "
              f"diffusers' {json.loads((out / 'model_index.json').read_text())['_class_name']}"
              f".from_pretrained('{out}'))")
    else:
        srs = [read_saved(p, "sr_ckpts", cfg.use_ema) for p in _list(cfg.sr_ckpts) or []]
        ImageToVideoPipeline(BaseModel.from_saved(base, load_encoders=False), [SRStage.from_saved(s) for s in srs],
                             [s.source for s in srs], cfg.check_sizes)
        out = export_pipeline(base, srs, cfg.export)
        print(f"exported the base model{merged} and {len(srs)} upsampler stage(s) to {out} "
              f"(load with wantrain.inference.load_exported('{out}'))")
    if cfg.get("export_lora"):
        path = save_lora(base.lora["state"], base.lora["settings"], Path(cfg.export) / "lora" / LORA_FILE)
        print(f"wrote the LoRA adapters alone to {path} (sample base_ckpt=BASE lora={path}; diffusers: "
              "pipe.load_lora_weights)")
        if base.config.get("net"):  # a Wan backbone: also the original Wan names ComfyUI loads
            comfy = save_original_wan_lora(base.lora["state"], base.lora["settings"], path.parent / COMFYUI_FILE)
            print(f"wrote them in ComfyUI's (original Wan) names to {comfy}")
    return out


def jobs_of(cfg: DictConfig) -> list[Job]:
    """The clips to make: one from image + prompt, or every row of the prompts file."""
    if cfg.prompts:
        if cfg.image or cfg.prompt:
            raise WantrainError("give either prompts=FILE or image=PATH prompt=\"...\", not both")
        return read_jobs(cfg.prompts, int(cfg.seed), cfg.out_dir)
    if not cfg.image or cfg.prompt is None:
        raise WantrainError("nothing to sample: pass image=PATH prompt=\"...\" "
                            "(or prompts=FILE.csv|jsonl, or export=DIR)")
    out = Path(cfg.out) if cfg.out else Path(cfg.out_dir) / "sample.mp4"
    return [Job(0, Path(cfg.image), str(cfg.prompt), int(cfg.seed), out)]


def batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for i in range(0, len(jobs), max(1, size)):
        yield jobs[i:i + max(1, size)]


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Sample this rank's clips (or export the networks) as configured in conf/sample.yaml."""
    if cfg.export:
        export(cfg)
        if not (cfg.image or cfg.prompts):
            return
    jobs = jobs_of(cfg)
    rank, world = process_rank()
    mine = my_share(jobs, rank, world)
    device = pick_device(cfg.device)
    pipe = load_pipeline(cfg.base_ckpt, _list(cfg.sr_ckpts), cfg.use_ema, cfg.text_encoder, cfg.image_encoder,
                         cfg.check_sizes, device, lora=cfg.get("lora"))
    stages = pipe.num_stages_for(cfg.size)  # refuse an unreachable size before any work
    base = pipe.base
    base.check_prompts([job.prompt for job in jobs])
    settings = base.settings(sampler=cfg.sampler, num_steps=cfg.steps, eta=cfg.eta, text_scale=cfg.text_scale,
                             image_scale=cfg.image_scale, shift=cfg.get("shift"),
                             guidance_rescale=cfg.get("guidance_rescale"), guidance_ramp=cfg.get("guidance_ramp"),
                             frame0=cfg.get("frame0"), cond_aug=cfg.get("cond_aug"))
    fps = int(cfg.fps or (base.sampling.get("video") or {}).get("fps", 8))
    base.micro = {"fps": float(fps), "motion": float(cfg.get("motion") or 0.0)}  # models with micro-conditioning
    records_path = Path(cfg.out_dir) / f"samples-rank{rank}.jsonl"
    records_path.parent.mkdir(parents=True, exist_ok=True)
    for group in batches(mine, int(cfg.batch_size)):
        images = torch.stack([read_image(job.image, base.resolution) for job in group])
        start = time.perf_counter()
        with autocast(device, cfg.precision):
            videos = pipe(images, [j.prompt for j in group], [j.seed for j in group], size=cfg.size, tile=cfg.tile,
                          tile_overlap=cfg.tile_overlap, sr_noise_level=cfg.sr_noise_level,
                          num_frames=cfg.num_frames, **settings)
        seconds = (time.perf_counter() - start) / len(group)
        for job, video in zip(group, videos.float().cpu()):
            write_mp4(video, job.out, fps=fps, crf=int(cfg.crf))
            if cfg.grid:
                write_grid(video, job.out.with_suffix(".png"), cfg.grid_cols)
            _, t, h, w = video.shape
            record = {"index": job.index, "image": str(job.image), "prompt": job.prompt, "seed": job.seed,
                      "out": str(job.out), "frames": t, "height": h, "width": w, "stages": stages,
                      "seconds": round(seconds, 3), **settings}
            with records_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(f"wrote {job.out} ({t} frames, {h}x{w}, seed {job.seed})", flush=True)
    (Path(cfg.out_dir) / "sample-config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
