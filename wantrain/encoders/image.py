"""Frozen image encoder (DiT-XL/2 features or CLIP vision): images (B, 3, H, W) in [-1, 1] -> tokens (B, N, D_i)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from wantrain.encoders.frozen import FrozenModule, has_weights, load_transformers_model, parse_dtype, resolve_local

DIT_HINT = (
    "download weights where there is internet, e.g. `hf download facebook/DiT-XL-2-256 --local-dir DIR` "
    "(DIR/transformer/ and DIR/vae/), copy DIR here and set its path; or build a tiny random one with "
    "wantrain.encoders.tiny.build_tiny_dit"
)
CLIP_HINT = (
    "download weights where there is internet, e.g. `hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K "
    "--local-dir DIR`, copy DIR here and set its path; or build a tiny random one with "
    "wantrain.encoders.tiny.build_tiny_clip"
)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def center_crop_resize(images: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Center-crop (B, C, H, W) to a square and resize it to (B, C, size, size) with antialiasing."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[..., top : top + side, left : left + side]
    if side != size:
        images = F.interpolate(images, size=(size, size), mode=mode, antialias=True, align_corners=False)
    return images


def _check_diffusers_dir(folder: Path, what: str) -> None:
    """Raise one clear line if `folder` lacks a diffusers config or weights."""
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json ({what} of the DiT-XL-2-256 layout): {DIT_HINT}")
    if not has_weights(folder, ("diffusion_pytorch_model",)):
        raise FileNotFoundError(
            f"{folder} has config.json but no diffusion_pytorch_model.safetensors / .bin: {DIT_HINT}"
        )


def clip_folders(path: str | os.PathLike) -> tuple[Path, Path]:
    """(model folder, preprocessor folder) of a CLIP / CLIP-vision folder or a pipeline's image_encoder/ +
    image_processor/; one clear line when the model's config or weights are missing."""
    root = Path(path)
    model_dir = root / "image_encoder" if (root / "image_encoder" / "config.json").exists() else root
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{root} has no config.json (nor image_encoder/config.json): {CLIP_HINT}")
    if not has_weights(model_dir, ("model", "pytorch_model")):
        raise FileNotFoundError(f"{model_dir} has config.json but no model.safetensors / pytorch_model.bin: "
                                f"{CLIP_HINT}")
    in_model = (model_dir / "preprocessor_config.json").exists() or not (root / "image_processor").is_dir()
    return model_dir, model_dir if in_model else root / "image_processor"


class FrozenImageEncoder(FrozenModule):
    """Frozen image encoder with backend "dit" (VAE -> DiT at t=0 with the null class -> hidden states of
    block `block`) or "clip" (CLIPVisionModel hidden states of layer `block`); forward -> (B, N, D) float32."""

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "dit",
        block: int = -1,
        resolution: int | None = None,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        super().__init__()
        if backend not in ("dit", "clip"):
            raise ValueError(f"backend={backend!r} is not supported: use 'dit' or 'clip'")
        self.path, self.backend = str(path), backend
        torch_dtype = parse_dtype(dtype)
        if backend == "dit":
            self._load_dit(resolve_local(path, "DiT image encoder", DIT_HINT), torch_dtype, resolution)
        else:
            self._load_clip(resolve_local(path, "CLIP image encoder", CLIP_HINT), torch_dtype, resolution)
        if not -self.num_blocks <= block < self.num_blocks:
            raise ValueError(f"block={block} is out of range for a {self.num_blocks}-block {backend} encoder")
        self.block = block % self.num_blocks

    def _load_dit(self, root: Path, dtype: torch.dtype, resolution: int | None) -> None:
        """Load DiTTransformer2DModel (root/transformer) + AutoencoderKL (root/vae)."""
        from diffusers import AutoencoderKL, DiTTransformer2DModel
        from diffusers.utils import logging as dlogging

        _check_diffusers_dir(root / "transformer", "transformer/")
        _check_diffusers_dir(root / "vae", "vae/")
        verbosity = dlogging.get_verbosity()
        dlogging.set_verbosity_error()  # the hub DiT config names the old Transformer2DModel class
        try:
            dit = DiTTransformer2DModel.from_pretrained(root, subfolder="transformer", torch_dtype=dtype,
                                                        local_files_only=True)
            vae = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype, local_files_only=True)
        finally:
            dlogging.set_verbosity(verbosity)
        self._freeze("transformer", dit)
        self._freeze("vae", vae)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.patch_size = dit.config.patch_size
        native = dit.config.sample_size * self.vae_scale
        self.resolution = int(resolution or native)
        step = self.vae_scale * self.patch_size
        if self.resolution % step:
            raise ValueError(
                f"resolution={self.resolution} must be a multiple of {step} for this DiT (native {native})"
            )
        self.num_blocks = dit.config.num_layers
        self.dim: int = dit.config.num_attention_heads * dit.config.attention_head_dim
        self.num_tokens: int = (self.resolution // step) ** 2
        self.null_class: int = dit.config.num_embeds_ada_norm  # LabelEmbedding's classifier-free slot

    def _load_clip(self, root: Path, dtype: torch.dtype, resolution: int | None) -> None:
        """Load CLIPVisionModel from a CLIP / CLIP-vision dir or a pipeline's image_encoder/ (+ image_processor/)."""
        from transformers import CLIPVisionModel

        model_dir, processor_dir = clip_folders(root)
        model = load_transformers_model(CLIPVisionModel, model_dir, CLIP_HINT, dtype=dtype)
        self._freeze("model", model)
        cfg = model.config
        processor = processor_dir / "preprocessor_config.json"
        pre = json.loads(processor.read_text()) if processor.exists() else {}
        crop = pre.get("crop_size", cfg.image_size)
        crop = crop.get("height", cfg.image_size) if isinstance(crop, dict) else crop
        self.resolution = int(resolution or crop)
        self.register_buffer("mean", torch.tensor(pre.get("image_mean", OPENAI_CLIP_MEAN)).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(pre.get("image_std", OPENAI_CLIP_STD)).view(1, 3, 1, 1), False)
        if self.resolution % cfg.patch_size:
            raise ValueError(f"resolution={self.resolution} must be a multiple of the CLIP patch size {cfg.patch_size}")
        self.num_blocks = cfg.num_hidden_layers
        self.dim = cfg.hidden_size
        self.num_tokens = (self.resolution // cfg.patch_size) ** 2 + 1  # + class token
        self.native_resolution = cfg.image_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images (B, 3, H, W) in [-1, 1] -> tokens (B, N, D) float32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FrozenImageEncoder expects images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        images = images.to(self.device, torch.float32)
        if self.backend == "dit":
            return self._encode_dit(images).float()
        return self._encode_clip(images).float()

    def _encode_dit(self, images: torch.Tensor) -> torch.Tensor:
        """VAE latent mean -> DiT blocks 0..block at timestep 0 with the null class -> (B, N, D)."""
        dit, vae = self._frozen["transformer"], self._frozen["vae"]
        x = center_crop_resize(images, self.resolution).to(self.dtype)
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor  # (B, 4, h, w)
        if getattr(vae.config, "shift_factor", None):
            latents = latents - vae.config.shift_factor * vae.config.scaling_factor
        batch = latents.shape[0]
        timestep = torch.zeros(batch, dtype=torch.long, device=latents.device)
        labels = torch.full((batch,), self.null_class, dtype=torch.long, device=latents.device)
        hidden = dit.pos_embed(latents)  # (B, N, D)
        for blk in dit.transformer_blocks[: self.block + 1]:
            hidden = blk(hidden, timestep=timestep, class_labels=labels)
        return hidden

    def _encode_clip(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP normalisation -> CLIPVisionModel -> hidden states after layer `block` (B, N, D)."""
        model = self._frozen["model"]
        x = center_crop_resize((images + 1) / 2, self.resolution, mode="bicubic").clamp(0, 1)
        x = ((x - self.mean) / self.std).to(self.dtype)
        last = self.block == self.num_blocks - 1
        out = model(
            pixel_values=x,
            output_hidden_states=not last,
            interpolate_pos_encoding=self.resolution != self.native_resolution,
        )
        return out.last_hidden_state if last else out.hidden_states[self.block + 1]
