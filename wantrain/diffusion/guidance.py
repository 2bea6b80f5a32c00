"""Classifier-free guidance over text and image with separate scales, in one batched forward."""

from __future__ import annotations

from collections.abc import Callable

import torch

# pred_fn(x (B, ...), t (B,), drop_text (B,) bool, drop_image (B,) bool) -> model output (B, ...)
PredFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guidance_variants(text_scale: float, image_scale: float) -> list[tuple[bool, bool]]:
    """The (drop_text, drop_image) variants the guided prediction needs, conditional first."""
    if text_scale == 1.0 and image_scale == 1.0:
        return [(False, False)]
    if image_scale == 1.0:  # e(0,0) cancels: e = e(0,img) + s_txt (e(txt,img) - e(0,img))
        return [(False, False), (True, False)]
    return [(False, False), (True, False), (True, True)]


def combine_guidance(outputs: list[torch.Tensor], text_scale: float, image_scale: float) -> torch.Tensor:
    """InstructPix2Pix-style combination of the variant outputs from `guidance_variants`:
    e = e(0,0) + s_img (e(0,img) - e(0,0)) + s_txt (e(txt,img) - e(0,img))."""
    if len(outputs) == 1:
        return outputs[0]
    cond, no_text = outputs[0], outputs[1]
    if len(outputs) == 2:
        return no_text + text_scale * (cond - no_text)
    uncond = outputs[2]
    return uncond + image_scale * (no_text - uncond) + text_scale * (cond - no_text)


def guided_prediction(
    pred_fn: PredFn, x: torch.Tensor, t: torch.Tensor, text_scale: float = 1.0, image_scale: float = 1.0
) -> torch.Tensor:
    """Guided model output for x (B, ...) at t (B,); all needed variants run as one batch of k*B."""
    variants = guidance_variants(text_scale, image_scale)
    k, b = len(variants), x.shape[0]
    flags = torch.tensor(variants, dtype=torch.bool, device=x.device).repeat_interleave(b, dim=0)  # (k*B, 2)
    out = pred_fn(x.repeat(k, *([1] * (x.ndim - 1))), t.repeat(k), flags[:, 0], flags[:, 1])
    return combine_guidance(list(out.chunk(k, dim=0)), text_scale, image_scale)
