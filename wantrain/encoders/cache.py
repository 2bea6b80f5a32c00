"""Write embedding-cache shards: every sample's members unchanged + KEY.t5.npy (L_i, D) / KEY.dit.npy (N, D) float16,
and in latent space KEY.latent.npy / KEY.first_latent.npy (C, T', h, w) float16: the frozen VAE's normalised latents
of the clip and of its first-frame conditioning clip, so training runs no VAE."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wantrain.io.tar import ShardWriter, is_complete, read_samples

ImageLoader = Callable[[dict[str, bytes]], torch.Tensor]  # raw sample -> (3, H, W) in [-1, 1]
ClipLoader = Callable[[dict[str, bytes]], tuple[torch.Tensor, torch.Tensor]]  # -> (3, T, H, W), (3, H, W) in [-1, 1]


def _npy_bytes(array: np.ndarray) -> bytes:
    """Serialize an array as .npy float16 without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)
    return buf.getvalue()


def _decodable(samples: list[dict], load: Callable[[dict], Any], stats: dict[str, int], reason: str,
               ) -> tuple[list[Any], list[int]]:
    """`load` of every sample that decodes, with its index; the others are counted under `reason` and skipped."""
    loaded, idx = [], []
    for j, sample in enumerate(samples):
        try:
            loaded.append(load(sample))
            idx.append(j)
        except Exception:  # noqa: BLE001 - any decoding failure skips this sample's array
            stats[reason] += 1
    return loaded, idx


def _encode_batch(
    samples: list[dict],
    text_encoder: Callable | None,
    image_encoder: Callable | None,
    load_image: ImageLoader | None,
    text_name: str,
    image_name: str,
    caption_ext: str,
    stats: dict[str, int],
    vae: torch.nn.Module | None = None,
    load_clip: ClipLoader | None = None,
) -> list[dict[str, bytes]]:
    """Run the encoders on a batch of raw samples -> per sample {extension: npy bytes}."""
    new: list[dict[str, bytes]] = [{} for _ in samples]
    if vae is not None:
        _encode_latents(samples, vae, load_clip, new, stats)
    if text_encoder is not None:
        idx = [j for j, s in enumerate(samples) if caption_ext in s]
        stats["missing_caption"] += len(samples) - len(idx)
        if idx:
            captions = [samples[j][caption_ext].decode("utf-8").strip() for j in idx]
            emb, mask = text_encoder(captions)  # (B, L, D), (B, L)
            for row, j in enumerate(idx):
                new[j][f"{text_name}.npy"] = _npy_bytes(emb[row][mask[row]].cpu().numpy())
            stats[text_name] += len(idx)
    if image_encoder is not None:
        images, idx = _decodable(samples, load_image, stats, "undecodable_image")
        if idx:
            tokens = image_encoder(torch.stack(images))  # (B, N, D)
            for row, j in enumerate(idx):
                new[j][f"{image_name}.npy"] = _npy_bytes(tokens[row].cpu().numpy())
            stats[image_name] += len(idx)
    return new


def _encode_latents(samples: list[dict], vae: torch.nn.Module, load_clip: ClipLoader, new: list[dict[str, bytes]],
                    stats: dict[str, int]) -> None:
    """Add KEY.latent.npy (the clip's latents) and KEY.first_latent.npy (its first-frame conditioning latents)."""
    clips, idx = _decodable(samples, load_clip, stats, "undecodable_clip")
    if not idx:
        return
    video = torch.stack([c[0] for c in clips])  # (B, 3, T, H, W)
    image = torch.stack([c[1] for c in clips])  # (B, 3, H, W)
    latents = vae.encode(video)  # (B, C, T', h, w)
    first = vae.first_frame_latents(image, video.shape[2])  # (B, C, T', h, w)
    for row, j in enumerate(idx):
        new[j]["latent.npy"] = _npy_bytes(latents[row].cpu().numpy())
        new[j]["first_latent.npy"] = _npy_bytes(first[row].cpu().numpy())
    stats["latent"] += len(idx)


def encode_shard(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    text_encoder: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]] | None,
    image_encoder: Callable[[torch.Tensor], torch.Tensor] | None,
    load_image: ImageLoader | None = None,
    batch_size: int = 16,
    text_name: str = "t5",
    image_name: str = "dit",
    caption_ext: str = "txt",
    vae: torch.nn.Module | None = None,
    load_clip: ClipLoader | None = None,
) -> dict[str, int]:
    """Copy shard `src` to `dst` (atomically) adding KEY.<text_name>.npy and KEY.<image_name>.npy; returns counts.

    `load_image` gives the image encoder its input, e.g. `SampleDecoder(...).conditioning_image` (the frame
    validation batches condition on). With a `vae` (a `FrozenVAE`) also KEY.latent.npy and KEY.first_latent.npy of
    the clip `load_clip` gives, e.g. `SampleDecoder(...).validation_clip`. Re-encoding replaces older arrays of the
    same names.
    """
    if image_encoder is not None and load_image is None:
        raise ValueError("encode_shard needs load_image with an image encoder, "
                         "e.g. SampleDecoder(...).conditioning_image")
    if vae is not None and load_clip is None:
        raise ValueError("encode_shard needs load_clip with a vae, e.g. SampleDecoder(...).validation_clip")
    stats = {"samples": 0, text_name: 0, image_name: 0, "missing_caption": 0, "undecodable_image": 0}
    if vae is not None:
        stats.update(latent=0, undecodable_clip=0)

    def flush(writer: ShardWriter, batch: list[dict]) -> None:
        news = _encode_batch(batch, text_encoder, image_encoder, load_image, text_name, image_name, caption_ext, stats,
                             vae, load_clip)
        for sample, new in zip(batch, news):
            writer.write({**sample, **new})

    with ShardWriter(dst) as writer:
        batch: list[dict] = []
        for sample in read_samples(src):
            batch.append(sample)
            stats["samples"] += 1
            if len(batch) == batch_size:
                flush(writer, batch)
                batch = []
        if batch:
            flush(writer, batch)
    return stats


def encode_shards(
    shards: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    text_encoder: Callable | None,
    image_encoder: Callable | None,
    load_image: ImageLoader | None = None,
    batch_size: int = 16,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    **kwargs,
) -> list[dict]:
    """Encode this rank's shards (shards[rank::world_size]) into out_dir/<same name>, skipping complete
    outputs (resumable per shard); returns one stats row per shard (with "status": written|skipped|error)."""
    from tqdm import tqdm

    rows = []
    mine = list(shards)[rank::world_size]
    for src in tqdm(mine, desc=f"encode rank {rank}", disable=not progress or rank != 0, unit="shard"):
        dst = Path(out_dir) / Path(src).name
        if dst.exists() and is_complete(dst):
            rows.append({"shard": str(src), "status": "skipped"})
            continue
        try:
            stats = encode_shard(src, dst, text_encoder, image_encoder, load_image, batch_size, **kwargs)
            rows.append({"shard": str(src), "status": "written", **stats})
        except (OSError, tarfile.TarError, EOFError) as err:
            rows.append({"shard": str(src), "status": "error", "error": f"{err.__class__.__name__}: {err}"})
    return rows
