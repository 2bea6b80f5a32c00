"""`python -m wantrain encode out=DIR`: cache the frozen encoders' embeddings (and, in latent space, the VAE's clip
latents) into shards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import expand_shard_spec
from wantrain.encoders.cache import encode_shards
from wantrain.encoders.conditioning import FrozenEncoders
from wantrain.encoders.tiny_wan import build_missing_backbone
from wantrain.errors import WantrainError
from wantrain.ranks import pick_device, process_rank
from wantrain.training.datamodule import fps_setting


def shards_to_encode(cfg: DictConfig) -> list[str]:
    """The shard list: `shards` when given, else the data config's train and val shards."""
    specs = [cfg.shards] if cfg.shards else [s for s in (cfg.data.get("train_shards"), cfg.data.get("val_shards")) if s]
    if not specs:
        raise WantrainError("nothing to encode: pass shards=SPEC (a brace pattern, list or directory of .tar)")
    return [url for spec in specs for url in expand_shard_spec(spec)]


def validation_decoder(data: DictConfig) -> SampleDecoder:
    """The decoder of validation batches (centred window and crop), so cached arrays equal live ones on validation
    data; training windows start elsewhere, as with any cache."""
    return SampleDecoder(
        num_frames=data.num_frames, resolution=data.resolution, frame_stride=data.get("frame_stride", 1),
        fps=fps_setting(data.get("fps")), loop_short_clips=data.get("loop_short_clips", False),
        backend=data.get("decode_backend", "pyav"), image_from=data.get("image_from", "frame"),
    )


def validation_frames(data: DictConfig) -> Callable[[dict], torch.Tensor]:
    """The conditioning frame exactly as validation batches see it (centred window and crop)."""
    return validation_decoder(data).conditioning_image


def wants_latents(cfg: DictConfig) -> bool:
    """`latents`: auto (when model.space=latent), true or false (checked by the schema, config_schema/commands.py)."""
    choice = cfg.get("latents", "auto")
    if choice == "auto":
        return cfg.model.get("space", "pixel") == "latent"
    if choice and not cfg.model.get("vae"):
        raise WantrainError("latents=true needs a VAE: set model.vae (e.g. +experiment=i2v_latent_tiny)")
    return choice


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Encode this rank's share of the shards (ranks from torchrun/srun: RANK/WORLD_SIZE or SLURM_PROCID/NTASKS)."""
    rank, world_size = process_rank()
    shards = shards_to_encode(cfg)
    latents = wants_latents(cfg)
    build_missing_backbone(cfg.model)  # a tiny Wan folder, whose encoders these are (wan_tiny_i2v)
    image_node = cfg.model.get("image_encoder")  # null: a text-to-video model, no image tokens to cache
    encoders = FrozenEncoders(instantiate(cfg.model.text_encoder),
                              None if image_node is None else instantiate(image_node),
                              build_tiny=cfg.model.get("build_tiny_encoders", False),
                              vae=instantiate(cfg.model.vae) if latents else None)
    encoders.build_missing()
    encoders.load()
    device = pick_device(cfg.device)
    text_encoder = encoders.text.to(device)
    image_encoder = None if encoders.image is None else encoders.image.to(device)
    decoder = validation_decoder(cfg.data)
    vae = None
    if latents:
        vae = encoders.load_vae().to(device)
        vae.check_shape(int(decoder.num_frames), *decoder.size)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = encode_shards(shards, out, text_encoder, image_encoder, decoder.conditioning_image,
                         batch_size=cfg.batch_size, rank=rank, world_size=world_size, vae=vae,
                         load_clip=decoder.validation_clip if latents else None)
    (out / f"encode-report-rank{rank}.json").write_text(json.dumps(rows, indent=1))
    failed = [row for row in rows if row["status"] == "error"]
    done = sum(row["status"] == "written" for row in rows)
    skipped = len(rows) - done - len(failed)
    print(f"encoded {done} shard(s) into {out}, {skipped} already complete, {len(failed)} failed")
    if failed:
        raise WantrainError(f"{len(failed)} shard(s) could not be encoded (first: {failed[0]['shard']}: "
                            f"{failed[0]['error']}); see {out}/encode-report-rank{rank}.json")
