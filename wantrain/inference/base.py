"""`BaseModel`: a trained `VideoDiffusion` with its frozen encoders, sampling clips from first frames + prompts."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.diffusion.sampling import sampling_options
from wantrain.diffusion.space import PIXELS, LatentSpace, Space
from wantrain.encoders.conditioning import FrozenEncoders
from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import DIFFUSION, SavedModel, build, build_diffusion, load_weights


def _load_encoder(node: dict[str, Any] | None, path: str | None, what: str) -> nn.Module:
    """Instantiate a frozen encoder from its config node (path overridable), with one-line errors."""
    if not node:
        raise WantrainError(f"the checkpoint's config has no {what} (it was trained on cached embeddings); "
                            f"give its config node's path with {what}=PATH")
    overrides = {"path": str(path)} if path else {}
    try:
        return build(node, **overrides)
    except (FileNotFoundError, OSError, ValueError) as err:
        where = path or node.get("path")
        raise WantrainError(f"{what} at {where} (from {'the command line' if path else 'the checkpoint config'}) "
                            f"cannot be loaded: {str(err).splitlines()[0]}; pass {what}=PATH") from None


class BaseModel(nn.Module):
    """Samples (B, 3, T, H, W) clips in [-1, 1] from first frames (B, 3, H, W) + prompts, with guidance."""

    def __init__(self, model: VideoDiffusion, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.sampling: dict[str, Any] = dict(config.get("sampling") or {})
        self.num_frames: int = int(config["num_frames"])
        self.resolution: tuple[int, int] = tuple(config["resolution"])  # (H, W)
        self.encoders: FrozenEncoders | None = None  # frozen, outside the module tree (not in state_dict)
        self.space: Space = PIXELS
        # micro-conditioning values for every clip (model.unet.micro_conditioning, e.g. {"fps": 8.0}); unset = 0
        self.micro: dict[str, float] = {}

    @classmethod
    def from_saved(cls, saved: SavedModel, text_encoder: str | None = None, image_encoder: str | None = None,
                   load_encoders: bool = True) -> BaseModel:
        """Build from a read checkpoint/export; encoders from the saved paths unless overridden."""
        if saved.kind != DIFFUSION:
            raise WantrainError(f"{saved.source} is an upsampler stage, not a base (diffusion) model: "
                                "pass it in sr_ckpts=[...] and the diffusion checkpoint as base_ckpt")
        model = load_weights(build_diffusion(saved.config), saved.state, f"{saved.source} diffusion model")
        base = cls(model, saved.config)
        if load_encoders:
            base.load_encoders(text_encoder, image_encoder)
        return base

    def load_encoders(self, text_path: str | None = None, image_path: str | None = None,
                      vae_path: str | None = None) -> None:
        """Load the frozen T5-family and DiT/CLIP encoders (and the VAE of latent space); check their widths."""
        text = partial(_load_encoder, self.config.get("text_encoder"), text_path, "text_encoder")
        takes_image = self.model.condition_dims()[1] is not None  # a text-to-video backbone has no image encoder
        image = partial(_load_encoder, self.config.get("image_encoder"), image_path, "image_encoder") \
            if takes_image else None
        latent = self.config.get("space") == "latent"
        vae = partial(_load_encoder, self.config.get("vae"), vae_path, "vae") if latent else None
        self.encoders = FrozenEncoders(text, image, vae=vae)
        self.encoders.load()
        self.space = LatentSpace(self.encoders.load_vae()) if latent else PIXELS
        self.encoders.check_dims(*self.model.condition_dims(), fix="wrong encoder paths?")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_prompt_tokens(self) -> int:
        return int(self.encoders.text.max_length)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Refuse prompts longer than the text encoder's token limit (they would be cut silently)."""
        encoder = self.encoders.text
        for i, prompt in enumerate(prompts):
            n = len(encoder.tokenizer(str(prompt))["input_ids"])
            if n > encoder.max_length:
                raise WantrainError(f"prompt {i} has {n} tokens, over the text encoder's limit of {encoder.max_length} "
                                    f"(max_length): shorten it ({str(prompt)[:40]!r}...)")

    def conditions(self, images: torch.Tensor, prompts: Sequence[str], num_frames: int) -> Conditions:
        """Encode first frames (B, 3, H, W) in [-1, 1] and prompts once, on the model's device, for clips of
        `num_frames` frames."""
        if self.encoders is None:
            self.load_encoders()
        device = self.device
        images = images.to(device, torch.float32)
        text, mask, tokens = self.encoders.encode(list(prompts), images, device)
        names = getattr(self.model.denoiser, "micro_conditioning", ())  # unset: fps of the checkpoint's videos, else 0
        unset = {"fps": float((self.sampling.get("video") or {}).get("fps", 8))}
        micro = {n: torch.full((images.shape[0],), float(self.micro.get(n, unset.get(n, 0.0)))) for n in names} or None
        frames = self.space.first_frames(images, num_frames)
        return Conditions(text, mask, tokens, frames, micro, self.space.image_frames(frames.shape[2])).to(device)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Sampling settings: the checkpoint's `model.sampling`, then non-None overrides (one-line errors)."""
        try:
            return sampling_options(self.sampling, self.model.schedule.samplers, **overrides)
        except ValueError as err:
            raise WantrainError(str(err)) from None

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
        options = self.settings(**overrides)
        cond = self.conditions(images, prompts, int(num_frames or self.num_frames))
        return self.space.decode(self.model.sample_from_seeds(cond, seeds, clip_sample=self.space.bounded, **options))
