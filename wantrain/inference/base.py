"""`BaseModel`: the trained video diffusion stage (UNet + fusion + frozen encoders) as a plain module that samples clips."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from wantrain.diffusion.sampling import SAMPLERS, make_sampler, sample
from wantrain.diffusion.schedule import NoiseSchedule
from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import DIFFUSION, StageFile, build, load_net
from wantrain.nets.unet import frame_condition


def _load_encoder(node: dict[str, Any] | None, path: str | None, what: str) -> nn.Module:
    """Instantiate a frozen encoder from its config node (path overridable), with one-line errors."""
    if not node:
        raise WantrainError(f"the checkpoint's config has no {what} (it was trained on cached embeddings); "
                            f"give its config node's path with {what}=PATH")
    overrides = {"path": str(path)} if path else {}
    try:
        return build(node, **overrides).eval().requires_grad_(False)
    except (FileNotFoundError, OSError, ValueError) as err:
        where = path or node.get("path")
        raise WantrainError(f"{what} at {where} (from {'the command line' if path else 'the checkpoint config'}) "
                            f"cannot be loaded: {str(err).splitlines()[0]}; pass {what}=PATH") from None


class BaseModel(nn.Module):
    """Samples (B, 3, T, H, W) clips in [-1, 1] from first frames (B, 3, H, W) + prompts with classifier-free guidance."""

    def __init__(self, unet: nn.Module, fusion: nn.Module, schedule: NoiseSchedule, config: dict[str, Any]) -> None:
        super().__init__()
        self.unet, self.fusion, self.schedule = unet, fusion, schedule
        self.config = config
        self.sampling: dict[str, Any] = dict(config.get("sampling") or {})
        self.num_frames: int = int(config["num_frames"])
        self.resolution: tuple[int, int] = tuple(config["resolution"])  # (H, W)
        self.encoders: dict[str, nn.Module] = {}  # frozen, outside the module tree (not in state_dict)

    @classmethod
    def from_stage(cls, stage: StageFile, text_encoder: str | None = None, image_encoder: str | None = None,
                   load_encoders: bool = True) -> "BaseModel":
        """Build from a read checkpoint/export; encoders from the saved paths unless overridden."""
        if stage.kind != DIFFUSION:
            raise WantrainError(f"{stage.source} is an upsampler stage, not a base (diffusion) model: "
                                "pass it in sr_ckpts=[...] and the diffusion checkpoint as base_ckpt")
        cfg = stage.config
        model = cls(load_net(cfg["unet"], stage.weights["unet"], f"{stage.source} unet"),
                    load_net(cfg["fusion"], stage.weights["fusion"], f"{stage.source} fusion"),
                    build(cfg["schedule"]), cfg)
        if load_encoders:
            model.load_encoders(text_encoder, image_encoder)
        return model

    def load_encoders(self, text_path: str | None = None, image_path: str | None = None) -> None:
        """Load the frozen T5-family and DiT/CLIP encoders and check their widths against the fusion module."""
        self.encoders["text"] = _load_encoder(self.config.get("text_encoder"), text_path, "text_encoder")
        self.encoders["image"] = _load_encoder(self.config.get("image_encoder"), image_path, "image_encoder")
        dims = self.encoders["text"].dim, self.encoders["image"].dim
        if dims != (self.fusion.text_dim, self.fusion.image_dim):
            raise WantrainError(f"encoder widths (text {dims[0]}, image {dims[1]}) do not match the model "
                                f"(text {self.fusion.text_dim}, image {self.fusion.image_dim}): wrong encoder paths?")

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def max_prompt_tokens(self) -> int:
        return int(self.encoders["text"].max_length)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Refuse prompts longer than the text encoder's token limit (they would be cut silently)."""
        encoder = self.encoders["text"]
        for i, prompt in enumerate(prompts):
            n = len(encoder.tokenizer(str(prompt))["input_ids"])
            if n > encoder.max_length:
                raise WantrainError(f"prompt {i} has {n} tokens, over the text encoder's limit of {encoder.max_length} "
                                    f"(max_length): shorten it ({str(prompt)[:40]!r}...)")

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Text tokens (B, L, Dt), mask (B, L) bool, image tokens (B, N, Di), float32 on the model's device."""
        device = self.device
        for enc in self.encoders.values():
            if enc.device != device:
                enc.to(device)
        text, mask = self.encoders["text"](list(prompts))
        tokens = self.encoders["image"](images.to(device))
        return text.float(), mask.bool(), tokens.float()

    def condition(self, text: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor, image: torch.Tensor,
                  num_frames: int, drop_text: torch.Tensor, drop_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """UNet keyword inputs (context, context_mask, pooled, concat) under a (B,) dropout pattern."""
        context, context_mask, pooled = self.fusion(text, mask, tokens, drop_text=drop_text, drop_image=drop_image)
        concat = frame_condition(image, num_frames, keep=~drop_image)
        return {"context": context, "context_mask": context_mask, "pooled": pooled, "concat": concat}

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Sampling settings: the checkpoint's `model.sampling`, then non-None overrides."""
        out = {"sampler": "ddim", "num_steps": 25, "eta": 0.0, "text_scale": 1.0, "image_scale": 1.0}
        out.update({k: v for k, v in self.sampling.items() if k in out})
        out.update({k: v for k, v in overrides.items() if v is not None})
        if out["sampler"] not in SAMPLERS:
            raise WantrainError(f"sampler={out['sampler']!r}: use one of {', '.join(SAMPLERS)}")
        if int(out["num_steps"]) < 1:
            raise WantrainError(f"steps={out['num_steps']}: need at least 1 sampling step")
        return out

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompts: Sequence[str], seeds: Sequence[int],
                 num_frames: int | None = None, **overrides: Any) -> torch.Tensor:
        """Clips (B, 3, T, H, W) in [-1, 1] from first frames `images` (B, 3, H, W) in [-1, 1] and prompts.

        Each clip's initial noise comes from its own seed, so a clip does not depend on its batch neighbours
        (DDIM with eta > 0 draws its per-step noise from the first seed of the batch).
        """
        b = images.shape[0]
        if len(prompts) != b or len(seeds) != b:
            raise ValueError(f"{b} images, {len(prompts)} prompts and {len(seeds)} seeds: give one of each per clip")
        if tuple(images.shape[-2:]) != self.resolution:
            raise WantrainError(f"images are {tuple(images.shape[-2:])} but the model makes {self.resolution} clips")
        opts = self.settings(**overrides)
        device, t = self.device, int(num_frames or self.num_frames)
        images = images.to(device, torch.float32)
        text, mask, tokens = self.encode(prompts, images)
        shape = (b, 3, t, *self.resolution)
        noise = torch.stack([torch.randn(shape[1:], generator=torch.Generator(device).manual_seed(int(s)), device=device)
                             for s in seeds])

        def pred_fn(x: torch.Tensor, ts: torch.Tensor, drop_text: torch.Tensor, drop_image: torch.Tensor) -> torch.Tensor:
            k = x.shape[0] // b
            rep = lambda v: v.repeat(k, *([1] * (v.ndim - 1)))  # noqa: E731  (B, ...) -> (k*B, ...)
            inputs = self.condition(rep(text), rep(mask), rep(tokens), rep(images), t, drop_text, drop_image)
            return self.unet(x, ts, **inputs)

        scheduler = make_sampler(self.schedule.config, kind=opts["sampler"])
        out = sample(pred_fn, shape, scheduler, num_steps=int(opts["num_steps"]), text_scale=float(opts["text_scale"]),
                     image_scale=float(opts["image_scale"]), eta=float(opts["eta"]),
                     generator=torch.Generator(device).manual_seed(int(seeds[0])), device=device, noise=noise)
        return out.clamp(-1, 1)
