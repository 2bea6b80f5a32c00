"""Classifier-free guidance over text and image with separate scales, in one batched forward; guidance rescale and an
SVD-style per-frame guidance ramp."""

from __future__ import annotations

from collections.abc import Callable

import torch

# pred_fn(x (B, ...), t (B,), drop_text (B,) bool, drop_image (B,) bool) -> model output (B, ...)
PredFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Scale = float | torch.Tensor  # one scale, or per-frame scales shaped (1, 1, T, 1, 1) (see `frame_ramp`)


def _is_one(scale: Scale) -> bool:
    return bool(torch.all(torch.as_tensor(scale) == 1.0))


def guidance_variants(text_scale: Scale, image_scale: Scale) -> list[tuple[bool, bool]]:
    """The (drop_text, drop_image) variants the guided prediction needs, conditional first."""
    if _is_one(text_scale) and _is_one(image_scale):
        return [(False, False)]
    if _is_one(image_scale):  # e(0,0) cancels: e = e(0,img) + s_txt (e(txt,img) - e(0,img))
        return [(False, False), (True, False)]
    return [(False, False), (True, False), (True, True)]


def combine_guidance(outputs: list[torch.Tensor], text_scale: Scale, image_scale: Scale) -> torch.Tensor:
    """InstructPix2Pix-style combination of the variant outputs from `guidance_variants`:
    e = e(0,0) + s_img (e(0,img) - e(0,0)) + s_txt (e(txt,img) - e(0,img))."""
    if len(outputs) == 1:
        return outputs[0]
    cond, no_text = outputs[0], outputs[1]
    if len(outputs) == 2:
        return no_text + text_scale * (cond - no_text)
    uncond = outputs[2]
    return uncond + image_scale * (no_text - uncond) + text_scale * (cond - no_text)


def frame_ramp(scale: float, start: float, num_frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-frame guidance scales (1, 1, T, 1, 1) rising linearly from `start` on frame 0 to `scale` on the last frame
    (SVD's LinearPredictionGuider: 1.0 -> 3.0 over the clip; the frames near the given image need little guidance)."""
    ramp = torch.linspace(0.0, 1.0, num_frames, device=device) if num_frames > 1 else torch.zeros(1, device=device)
    return (start + (scale - start) * ramp).view(1, 1, num_frames, 1, 1)


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, eq. 15-16): scale the guided output (B, ...) to the per-sample std of the
    conditional one, mixed by phi (0 = plain CFG; DynamiCrafter / the paper use 0.7) against over-exposure."""
    if not phi:
        return guided
    dims = tuple(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp(min=1e-8))
    return phi * rescaled + (1 - phi) * guided


def guided_prediction(
    pred_fn: PredFn, x: torch.Tensor, t: torch.Tensor, text_scale: float = 1.0, image_scale: float = 1.0,
    rescale: float = 0.0, ramp: float | None = None,
) -> torch.Tensor:
    """Guided model output for x (B, C, T, H, W) at t (B,); all needed variants run as one batch of k*B.

    `rescale`: guidance rescale phi; `ramp`: when set, both scales ramp per frame from `ramp` (frame 0) to their value
    (last frame), see `frame_ramp`.
    """
    text: Scale = float(text_scale)
    image: Scale = float(image_scale)
    if ramp is not None:
        text, image = (frame_ramp(s, float(ramp), x.shape[2], x.device) for s in (text, image))
    variants = guidance_variants(text, image)
    k, b = len(variants), x.shape[0]
    flags = torch.tensor(variants, dtype=torch.bool, device=x.device).repeat_interleave(b, dim=0)  # (k*B, 2)
    out = pred_fn(x.repeat(k, *([1] * (x.ndim - 1))), t.repeat(k), flags[:, 0], flags[:, 1])
    outputs = list(out.chunk(k, dim=0))
    return rescale_guidance(combine_guidance(outputs, text, image), outputs[0], float(rescale))
