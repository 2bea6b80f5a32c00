"""The frozen text and image encoders of the diffusion model: loaded once per process, outside any module tree."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wantrain.encoders.frozen import has_weights, resolve_local
from wantrain.errors import WantrainError
from wantrain.nets.freeze import freeze

_LOADED: dict[str, nn.Module] = {}  # one copy of each encoder per process, shared by every module instance


def _cache_key(factory: Callable[[], nn.Module]) -> str:
    if isinstance(factory, partial):
        return f"{factory.func.__module__}.{factory.func.__qualname__}{sorted(factory.keywords.items())}{factory.args}"
    return repr(factory)


def _keyword(factory: Callable[[], nn.Module] | None, name: str, default: Any = None) -> Any:
    return factory.keywords.get(name, default) if isinstance(factory, partial) else default


def _check_text(factory: Callable[[], nn.Module], path: str) -> None:
    from wantrain.encoders.text import resolve_text_dirs

    resolve_text_dirs(path)


def _check_image(factory: Callable[[], nn.Module], path: str) -> None:
    from wantrain.encoders.image import CLIP_HINT, DIT_HINT

    if _keyword(factory, "backend", "dit") == "clip":
        root = resolve_local(path, "CLIP image encoder", CLIP_HINT)
        folder = root / "image_encoder" if (root / "image_encoder" / "config.json").exists() else root
        needs, hint = [(folder, ("model", "pytorch_model"))], CLIP_HINT
    else:  # the DiT-XL-2-256 layout: transformer/ and vae/, diffusers weights in each
        root = resolve_local(path, "DiT image encoder", DIT_HINT)
        needs, hint = [(root / sub, ("diffusion_pytorch_model",)) for sub in ("transformer", "vae")], DIT_HINT
    for folder, stems in needs:
        if not (folder / "config.json").exists() or not has_weights(folder, stems):
            raise FileNotFoundError(f"{folder} lacks config.json or weights ({stems[0]}.safetensors / .bin): {hint}")


def _check_vae(factory: Callable[[], nn.Module], path: str) -> None:
    from wantrain.encoders.vae import resolve_vae_dir

    resolve_vae_dir(path, _keyword(factory, "kind", "wan"))


class FrozenEncoders:
    """Holds the frozen T5-family text encoder and DiT/CLIP image encoder (not an nn.Module on purpose)."""

    def __init__(self, text: Callable[[], nn.Module] | None, image: Callable[[], nn.Module] | None,
                 build_tiny: bool = False, vae: Callable[[], nn.Module] | None = None) -> None:
        self.text_factory, self.image_factory, self.vae_factory = text, image, vae
        self.build_tiny = build_tiny
        self.text: nn.Module | None = None
        self.image: nn.Module | None = None
        self.vae: nn.Module | None = None  # the VAE of latent space (`FrozenVAE`), when the model has one

    def build_missing(self) -> None:
        """Write tiny random encoders (real architectures) where the config asks for them and none exist."""
        if not self.build_tiny:
            return
        from wantrain.data.synthetic import caption_corpus
        from wantrain.encoders import tiny

        text_path, image_path = _keyword(self.text_factory, "path"), _keyword(self.image_factory, "path")
        if text_path and not Path(text_path).exists():
            kind = _keyword(self.text_factory, "kind", "t5")
            builder = tiny.build_tiny_umt5 if kind == "umt5" else tiny.build_tiny_t5
            builder(text_path, caption_corpus())
        if image_path and not Path(image_path).exists():
            backend = _keyword(self.image_factory, "backend", "dit")
            (tiny.build_tiny_clip if backend == "clip" else tiny.build_tiny_dit)(image_path)
        vae_path = _keyword(self.vae_factory, "path")
        if vae_path and not Path(vae_path).exists():
            kind = _keyword(self.vae_factory, "kind", "wan")
            (tiny.build_tiny_kl_vae if kind == "kl" else tiny.build_tiny_wan_vae)(vae_path)

    def check_available(self) -> None:
        """Fail in one line, loading nothing, when an encoder path lacks the config and weight files its loader
        needs (paths that `build_missing` will fill with tiny encoders are fine)."""
        checks = ((self.text_factory, _check_text), (self.image_factory, _check_image),
                  (self.vae_factory, _check_vae))
        for factory, check in checks:
            path = _keyword(factory, "path")
            if path is not None and not (self.build_tiny and not Path(path).exists()):
                check(factory, path)

    def load(self) -> None:
        """Instantiate both encoders (once per process) in eval mode without gradients."""
        if self.text_factory is None:
            raise WantrainError("model.conditioning=live needs model.text_encoder; set it, or use "
                                "model.conditioning=cached with cached embeddings")
        self.text = self._load(self.text_factory)
        self.image = None if self.image_factory is None else self._load(self.image_factory)  # T2V: none

    def load_vae(self) -> nn.Module:
        """The frozen VAE of latent space (loaded once per process)."""
        if self.vae_factory is None:
            raise WantrainError("model.space=latent needs model.vae (a diffusers AutoencoderKLWan or AutoencoderKL "
                                "folder); set model.vae.path, or use model.space=pixel")
        if self.vae is None:
            self.vae = self._load(self.vae_factory)
        return self.vae

    @staticmethod
    def _load(factory: Callable[[], nn.Module]) -> nn.Module:
        key = _cache_key(factory)
        if key not in _LOADED:
            _LOADED[key] = freeze(factory())
        return _LOADED[key]

    def check_dims(self, text_dim: int, image_dim: int | None,
                   fix: str = "set model.fusion.text_dim={text} model.fusion.image_dim={image}") -> None:
        """Fail in one line when the encoders' widths do not match the model's inputs (`fix` names the fix); a model
        that takes no image tokens (`image_dim` None: text-to-video) needs no image encoder."""
        if self.text is None:
            self.load()
        if image_dim is not None and self.image is None:
            raise WantrainError("the model takes image tokens but model.image_encoder is null: set it (a DiT or CLIP "
                                "folder)")
        image = None if self.image is None else self.image.dim
        if self.text.dim != text_dim or (image_dim is not None and image != image_dim):
            raise WantrainError(
                f"encoder widths (text {self.text.dim}, image {image}) do not match the model's inputs "
                f"(text_dim {text_dim}, image_dim {image_dim}); " + fix.format(text=self.text.dim, image=image)
            )

    @torch.no_grad()
    def encode(self, captions: list[str], images: torch.Tensor, device: torch.device,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Text tokens (B, L, Dt) float32, mask (B, L) bool and image tokens (B, N, Di) float32 on `device`."""
        if self.text is None:
            self.load()
        for encoder in (self.text, self.image):
            if encoder is not None and encoder.device != device:
                encoder.to(device)
        text, mask = self.text(list(captions))
        # no image encoder (text-to-video): no image tokens, (B, 0, 0)
        tokens = self.image(images.to(device)) if self.image is not None else images.new_zeros(len(images), 0, 0)
        return text.float(), mask.bool(), tokens.float()
