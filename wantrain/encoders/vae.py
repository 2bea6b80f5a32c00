"""Frozen video VAE for latent diffusion: diffusers AutoencoderKLWan (causal 3D) or AutoencoderKL applied per frame.

Videos (B, 3, T, H, W) in [-1, 1] <-> normalised latents (B, C, T', H / s, W / s), with the normalisation read from the
VAE's own config: Wan `latents_mean` / `latents_std` per channel, z = (mu - mean) / std; KL
z = (mu - shift_factor) * scaling_factor. Frozen like the other encoders: outside parameters() and state_dict().
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from wantrain.encoders.frozen import FrozenModule, has_weights, parse_dtype, resolve_local
from wantrain.errors import WantrainError

WAN_HINT = (
    "download weights where there is internet, e.g. `hf download Wan-AI/Wan2.1-I2V-14B-480P-Diffusers "
    "--include \"vae/*\" --local-dir DIR`, copy DIR here and set the path DIR/vae; or build a tiny random one with "
    "wantrain.encoders.tiny.build_tiny_wan_vae"
)
KL_HINT = (
    "download weights where there is internet, e.g. `hf download stabilityai/sd-vae-ft-mse --local-dir DIR`, "
    "copy DIR here and set its path; or build a tiny random one with wantrain.encoders.tiny.build_tiny_kl_vae"
)
KINDS = {"wan": "AutoencoderKLWan", "kl": "AutoencoderKL"}  # kind -> diffusers class (config `_class_name`)
FIRST_FRAME_MODES = ("zero_pad", "repeat")


def resolve_vae_dir(path: str | os.PathLike, kind: str) -> Path:
    """The diffusers VAE folder for `path` (a VAE folder, a pipeline folder with vae/, or a cached hub id); one clear
    line if config or weights are missing or the folder holds the other kind of VAE."""
    hint = WAN_HINT if kind == "wan" else KL_HINT
    root = resolve_local(path, f"{kind} VAE", hint)
    folder = root / "vae" if not (root / "config.json").exists() and (root / "vae" / "config.json").exists() else root
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{root} has no config.json (nor vae/config.json): {hint}")
    if not has_weights(folder, ("diffusion_pytorch_model",)):
        raise FileNotFoundError(f"{folder} has config.json but no diffusion_pytorch_model.safetensors / .bin: {hint}")
    found = json.loads((folder / "config.json").read_text()).get("_class_name")
    if found != KINDS[kind]:
        other = {v: k for k, v in KINDS.items()}.get(found)
        fix = f"set kind={other}" if other else "point to an AutoencoderKLWan (kind=wan) or AutoencoderKL (kind=kl)"
        raise WantrainError(f"{folder} holds {found}, not the {KINDS[kind]} that kind={kind!r} expects: {fix}")
    return folder


class FrozenVAE(FrozenModule):
    """Frozen diffusers VAE: kind "wan" (AutoencoderKLWan, causal 3D, T = 4k+1 frames -> 1 + k latent frames) or
    "kl" (AutoencoderKL per frame); encode / decode between [-1, 1] videos and normalised float32 latents."""

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str = "wan",
        dtype: str | torch.dtype = "float32",
        decode_chunk: int = 4,
        first_frame: str = "zero_pad",
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not supported: use one of {sorted(KINDS)}")
        if first_frame not in FIRST_FRAME_MODES:
            raise ValueError(f"first_frame={first_frame!r} is not supported: use one of {list(FIRST_FRAME_MODES)}")
        if int(decode_chunk) < 1:
            raise ValueError(f"decode_chunk={decode_chunk} must be >= 1 (frames per VAE call)")
        from diffusers import AutoencoderKL, AutoencoderKLWan
        from diffusers.utils import logging as dlogging

        folder = resolve_vae_dir(path, kind)
        cls = AutoencoderKLWan if kind == "wan" else AutoencoderKL
        verbosity = dlogging.get_verbosity()
        dlogging.set_verbosity_error()  # "install accelerate" advice on every load
        try:
            vae = cls.from_pretrained(str(folder), torch_dtype=parse_dtype(dtype), local_files_only=True)
        finally:
            dlogging.set_verbosity(verbosity)
        self._freeze("vae", vae)
        self.path, self.kind, self.decode_chunk, self.first_frame = str(path), kind, int(decode_chunk), first_frame
        cfg = vae.config
        if kind == "wan":
            self.latent_channels: int = int(cfg.z_dim)
            self.spatial_factor: int = 2 ** (len(cfg.dim_mult) - 1) * int(cfg.patch_size or 1)
            self.temporal_factor: int = 2 ** sum(bool(t) for t in cfg.temperal_downsample[: len(cfg.dim_mult) - 1])
            if self.temporal_factor != 4:
                raise ValueError(f"{folder}: temperal_downsample={cfg.temperal_downsample} gives a temporal factor "
                                 f"{self.temporal_factor}; diffusers' AutoencoderKLWan encodes 1 + 4k frames "
                                 "(factor 4)")
            mean, std = list(cfg.latents_mean), list(cfg.latents_std)
            if len(mean) != self.latent_channels or len(std) != self.latent_channels:
                raise ValueError(f"{folder}: latents_mean/latents_std need {self.latent_channels} values (z_dim)")
        else:
            self.latent_channels = int(cfg.latent_channels)
            self.spatial_factor = 2 ** (len(cfg.block_out_channels) - 1)
            self.temporal_factor = 1
            shift, scale = float(cfg.shift_factor or 0.0), float(cfg.scaling_factor)
            mean, std = [shift] * self.latent_channels, [1.0 / scale] * self.latent_channels
        # (1, C, 1, 1, 1) float32, not in state_dict: z = (mu - mean) / std
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1), False)
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1), False)

    @property
    def vae(self) -> torch.nn.Module:
        """The frozen diffusers VAE."""
        return self._frozen["vae"]

    def extra_repr(self) -> str:
        """Kind, path and factors in print(module)."""
        return (f"kind={self.kind}, path={self.path!r}, latent_channels={self.latent_channels}, "
                f"spatial_factor={self.spatial_factor}, temporal_factor={self.temporal_factor}")

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for a clip of `num_frames` frames (wan: 1 + (T - 1) // 4; kl: T)."""
        return 1 + (num_frames - 1) // self.temporal_factor if self.kind == "wan" else num_frames

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', h, w) of the latents of a (3, T, H, W) clip."""
        s = self.spatial_factor
        return self.latent_channels, self.latent_frames(num_frames), height // s, width // s

    def check_shape(self, num_frames: int, height: int, width: int) -> None:
        """Raise one WantrainError line naming the fix if the VAE cannot encode (T, H, W) clips exactly."""
        tf, s = self.temporal_factor, self.spatial_factor
        if num_frames < 1 or (num_frames - 1) % tf:
            near = max(1, (num_frames - 1) // tf * tf + 1)
            raise WantrainError(
                f"data.num_frames={num_frames}: the {self.kind} VAE encodes {tf}k+1 frames (1, {tf + 1}, {2 * tf + 1}, "
                f"...); set data.num_frames to e.g. {near} or {near + tf}"
            )
        if height % s or width % s:
            fix = [max(s, v // s * s) for v in (height, width)]
            raise WantrainError(
                f"a {height}x{width} clip does not divide by the VAE's spatial factor {s}; set data.resolution to a "
                f"multiple of {s} (e.g. {fix[0] if fix[0] == fix[1] else fix})"
            )

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"FrozenVAE.encode expects videos (B, 3, T, H, W) in [-1, 1], got {tuple(video.shape)}")
        self.check_shape(*video.shape[2:])

    def _mean(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw latent mean (the posterior's mode) of (N, 3, [T,] H, W) pixels in the compute dtype."""
        return self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mode()

    def _exact(self) -> torch.autocast:
        """Autocast off: the VAE computes in its own dtype, so live and cached latents agree under bf16-mixed."""
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Videos (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, T', H/s, W/s) float32 (deterministic:
        the posterior mean; autocast off). kl encodes `decode_chunk` frames per call."""
        self._check_video(video)
        with self._exact():
            return self._encode(video)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        """encode without the checks and the autocast guard."""
        if self.kind == "wan":
            mu = self._mean(video).float()  # (B, C, T', h, w)
        else:
            b, _, t, h, w = video.shape
            frames = video.transpose(1, 2).reshape(b * t, 3, h, w)  # (B*T, 3, H, W)
            mu = torch.cat([self._mean(c).float() for c in frames.split(self.decode_chunk)])  # (B*T, C, h, w)
            mu = mu.view(b, t, *mu.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
        return ((mu - self.latents_mean.float()) / self.latents_std.float()).contiguous()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, T', h, w) -> videos (B, 3, T, H, W) in [-1, 1] float32, decoded `decode_chunk`
        frames per call (kl: frames; wan: latent frames after the causal first one, with the causal cache kept)."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"FrozenVAE.decode expects latents (B, {self.latent_channels}, T', h, w), "
                             f"got {tuple(latents.shape)}")
        with self._exact():
            return self._decode(latents)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """decode without the checks and the autocast guard."""
        z = latents.to(self.device, torch.float32) * self.latents_std.float() + self.latents_mean.float()
        z = z.to(self.dtype)
        if self.kind == "wan":
            out = self._decode_wan(z)
        else:
            b, c, t, h, w = z.shape
            flat = z.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, h, w)
            out = torch.cat([self.vae.decode(chunk).sample.float() for chunk in flat.split(self.decode_chunk)])
            out = out.view(b, t, *out.shape[1:]).transpose(1, 2)  # (B, 3, T, H, W)
        return out.float().clamp(-1, 1).contiguous()

    def _decode_wan(self, z: torch.Tensor) -> torch.Tensor:
        """AutoencoderKLWan decode in time chunks through its causal feature cache: the first latent frame alone
        (as diffusers does), then `decode_chunk` latent frames per call; equal to the one-shot decode."""
        vae = self.vae
        if vae.use_tiling or not all(hasattr(vae, a) for a in ("clear_cache", "post_quant_conv", "decoder")):
            return vae.decode(z).sample.float()  # not the layout this chunking knows: decode whole clips
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        x = vae.post_quant_conv(z)  # 1x1x1 conv: no temporal context
        bounds = [0, *range(1, x.shape[2], self.decode_chunk), x.shape[2]]
        vae.clear_cache()
        try:
            outs = []
            for start, stop in zip(bounds[:-1], bounds[1:]):
                vae._conv_idx = [0]
                outs.append(vae.decoder(x[:, :, start:stop], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                        first_chunk=start == 0).float())
        finally:
            vae.clear_cache()
        out = torch.cat(outs, 2)  # (B, 3, T, H, W)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out

    @torch.no_grad()
    def first_frame_latents(self, image: torch.Tensor, num_frames: int) -> torch.Tensor:
        """First frames (B, 3, H, W) in [-1, 1] -> normalised latents (B, C, T', h, w) of a `num_frames` clip made of
        the frame then zeros ("zero_pad", as Wan2.1 I2V) or the frame on every frame ("repeat")."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"first_frame_latents expects images (B, 3, H, W) in [-1, 1], got {tuple(image.shape)}")
        b, _, h, w = image.shape
        self.check_shape(num_frames, h, w)
        first = image[:, :, None]  # (B, 3, 1, H, W)
        if self.kind == "kl":  # frames are encoded independently: encode each distinct frame once
            lat = self.encode(first)  # (B, C, 1, h, w)
            if self.first_frame == "repeat" or num_frames == 1:
                return lat.expand(-1, -1, num_frames, -1, -1).contiguous()
            zero = self.encode(torch.zeros_like(first[:1]))  # (1, C, 1, h, w)
            return torch.cat([lat, zero.expand(b, -1, num_frames - 1, -1, -1)], 2)
        if self.first_frame == "repeat":
            video = first.expand(-1, -1, num_frames, -1, -1)
        else:
            video = torch.cat([first, first.new_zeros(b, 3, num_frames - 1, h, w)], 2)
        return self.encode(video)
