"""Collate decoded samples into the batch contract (padded embeddings + masks, stacked latents, per-batch skips)."""

from __future__ import annotations

import torch


def pad_tokens(tokens: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of (L_i, D) to (B, L_max, D) float32 and a (B, L_max) bool mask (True = real token)."""
    dims = {t.shape[1] for t in tokens}
    if len(dims) != 1:
        raise ValueError(f"cached embeddings in one batch have different widths {sorted(dims)}; re-encode the shards")
    longest = max(t.shape[0] for t in tokens)
    out = torch.zeros(len(tokens), longest, dims.pop(), dtype=torch.float32)
    mask = torch.zeros(len(tokens), longest, dtype=torch.bool)
    for i, t in enumerate(tokens):
        out[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = True
    return out, mask


def stack_latents(name: str, latents: list[torch.Tensor]) -> torch.Tensor:
    """Stack cached latents (C, T', h, w) to (B, C, T', h, w); one line when their shapes differ."""
    shapes = sorted({tuple(t.shape) for t in latents})
    if len(shapes) != 1:
        raise ValueError(f"cached {name}.npy arrays in one batch have different shapes {shapes}: re-encode the shards "
                         "with the data.num_frames / data.resolution you train with")
    return torch.stack(latents)


def collate_samples(samples: list[dict], embeddings: tuple[str, ...] = (), skipped: dict | None = None) -> dict:
    """Stack samples: video (B,3,T,H,W), image (B,3,H,W), caption/key lists, <emb> (B,L,D) + <emb>_mask (B,L),
    cached latents (4-D per sample, e.g. latent / first_latent) stacked to (B,C,T',h,w)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    batch = {
        "video": torch.stack([s["video"] for s in samples]),
        "image": torch.stack([s["image"] for s in samples]),
        "caption": [s["caption"] for s in samples],
        "key": [s["key"] for s in samples],
    }
    for name in embeddings:
        arrays = [s[name] for s in samples]
        if arrays[0].ndim == 4:
            batch[name] = stack_latents(name, arrays)
        else:
            batch[name], batch[f"{name}_mask"] = pad_tokens(arrays)
    batch["skipped"] = dict(skipped or {})
    return batch
