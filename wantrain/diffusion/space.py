"""Where the diffusion model works: `PixelSpace` (clips in [-1, 1]) or `LatentSpace` (a frozen VAE's latents).

A space maps clips to model space and back and builds the first-frame conditioning clip; it holds no trained
parameters (the VAE is frozen, outside the model, its EMA and checkpoints, like the text/image encoders).
"""

from __future__ import annotations

from typing import Protocol

import torch


class Space(Protocol):
    """The model space of a diffusion model."""

    channels: int
    spatial_factor: int  # pixels per model-space position along H and W
    bounded: bool  # model-space clips lie in [-1, 1], so samplers may clip their x0 predictions to it

    def shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]: ...
    def check_shape(self, num_frames: int, height: int, width: int) -> None: ...
    def encode(self, video: torch.Tensor) -> torch.Tensor: ...
    def decode(self, x: torch.Tensor) -> torch.Tensor: ...
    def first_frames(self, image: torch.Tensor, num_frames: int) -> torch.Tensor: ...
    def image_frames(self, frames: int) -> torch.Tensor: ...


class PixelSpace:
    """Pixel space: the model denoises clips (B, 3, T, H, W) in [-1, 1] directly."""

    channels = 3
    spatial_factor = 1
    bounded = True

    def shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T, H, W) of a clip in model space."""
        return (3, num_frames, height, width)

    def check_shape(self, num_frames: int, height: int, width: int) -> None:
        """Any clip shape works in pixel space."""

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) -> model space (the same tensor, float32)."""
        return video.float()

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> clips in [-1, 1]."""
        return x.float().clamp(-1, 1)

    def first_frames(self, image: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The conditioning clip: the first frame (B, 3, H, W) on every frame -> (B, 3, T, H, W)."""
        return image.float()[:, :, None].expand(-1, -1, num_frames, -1, -1)

    def image_frames(self, frames: int) -> torch.Tensor:
        """(T,) bool: which conditioning frames carry the input image (all: it is repeated)."""
        return torch.ones(frames, dtype=torch.bool)


PIXELS = PixelSpace()


class LatentSpace:
    """Latent space of a frozen VAE (`wantrain.encoders.vae.FrozenVAE`): normalised latents (B, C, T', h, w)."""

    bounded = False  # normalised latents have unit std: clipping x0 to [-1, 1] would cut a third of the values

    def __init__(self, vae: torch.nn.Module) -> None:
        self.vae = vae
        self.channels = int(vae.latent_channels)
        self.spatial_factor = int(vae.spatial_factor)

    def shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', h, w) of a clip's latents."""
        f = self.vae.spatial_factor
        return (self.channels, self.vae.latent_frames(num_frames), height // f, width // f)

    def check_shape(self, num_frames: int, height: int, width: int) -> None:
        """One-line error when the VAE cannot take clips of this shape (e.g. Wan needs 4k+1 frames)."""
        self.vae.check_shape(num_frames, height, width)

    def _on(self, device: torch.device) -> torch.nn.Module:
        if self.vae.device != device:
            self.vae.to(device)
        return self.vae

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, T', h, w) float32."""
        return self._on(video.device).encode(video)

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> clips (B, 3, T, H, W) in [-1, 1] (decoded in chunks)."""
        return self._on(x.device).decode(x)

    @torch.no_grad()
    def first_frames(self, image: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The conditioning latents of the first frame (B, 3, H, W) for a clip of `num_frames` frames."""
        return self._on(image.device).first_frame_latents(image, num_frames)

    def image_frames(self, frames: int) -> torch.Tensor:
        """(T',) bool: which conditioning latent frames carry the input image: every one when the VAE encodes the
        image repeated (`first_frame: repeat`; they are not copies of latent frame 0 under a causal VAE), frame 0 alone
        when it encodes the image then zeros (`zero_pad`, Wan2.1 I2V)."""
        mask = torch.ones(frames, dtype=torch.bool)
        if self.vae.first_frame == "zero_pad":
            mask[1:] = False
        return mask


def check_unet_channels(unet: torch.nn.Module, space: Space, where: str = "model.unet") -> None:
    """One-line error when the denoiser's input/output/concat channels do not fit the space's channels (the UNet:
    concat C + 1, clip + mask; a backbone with `expected_concat`, e.g. Wan I2V: C + 4)."""
    c = space.channels
    concat = unet.expected_concat(c) if hasattr(unet, "expected_concat") else c + 1
    have = (int(unet.in_channels), int(unet.out_channels), int(unet.concat_channels))
    if have != (c, c, concat):
        raise ValueError(f"{where} has in/out/concat channels {have} but this space has {c}-channel clips: set "
                         f"{where}.in_channels={c} {where}.out_channels={c} {where}.concat_channels={concat}")
