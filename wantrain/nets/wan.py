"""`WanDenoiser`: diffusers' `WanTransformer3DModel` (wrapped, not rewritten) as a backbone of the diffusion core,
conditioned exactly as diffusers' Wan pipelines condition it.

- I2V (Wan2.1 I2V-14B, `WanImageToVideoPipeline`): umT5 text states (B, 512, 4096), zero after the prompt's tokens;
  CLIP-vision states (B, 257, 1280) (`encoder_hidden_states_image`); on channels, the noisy latents (16), then a
  4-channel mask that is 1 on the latent frames carrying the image, then the first-frame latents (16): 36 in.
- T2V (Wan2.1 T2V-1.3B / 14B, `WanPipeline`): text states only, 16 channels in.

Condition dropout (classifier-free guidance) zeroes the text states (the "zero" caption dropout of finetrainers)
and, for the image, the CLIP states and the channel conditioning.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.nets.fusion import check_dropout_rates, draw_dropout
from wantrain.nets.pretrained import cast_like_diffusers, load_pretrained, read_config
from wantrain.nets.state_match import InitReport
from wantrain.nets.wan_architectures import differences, released_architecture

# diffusers' WanAttnProcessor splits the image tokens off the context as everything before the last 512
# (transformer_wan.py: "512 is the context length of the text encoder, hardcoded for now").
WAN_TEXT_LENGTH = 512
# The I2V mask has one channel per frame a latent frame stands for: the Wan VAE's temporal factor 4
# (pipeline_wan_i2v.py prepare_latents: mask_lat_size.view(B, -1, vae_scale_factor_temporal, h, w)).
WAN_MASK_CHANNELS = 4


def wan_channel_condition(frames: torch.Tensor, image_frames: torch.Tensor | None, mask_channels: int,
                          ) -> torch.Tensor:
    """[mask, first-frame latents] (B, mask_channels + C, T', h, w), as `WanImageToVideoPipeline.prepare_latents`
    builds it: the mask is 1 on latent frames that carry the image (frame 0 of a zero-padded first frame)."""
    b, _, t, h, w = frames.shape
    carries = torch.zeros(t, dtype=frames.dtype, device=frames.device)
    if image_frames is None:
        carries[0] = 1.0
    else:
        carries = image_frames.to(device=frames.device, dtype=frames.dtype)
    mask = carries.view(1, 1, t, 1, 1).expand(b, mask_channels, t, h, w)
    return torch.cat([mask, frames], dim=1)


class WanDenoiser(nn.Module):
    """A `WanTransformer3DModel` from a diffusers folder (`path`: the transformer folder or the pipeline folder) or
    from `config` (random init); called as the core calls a backbone: (x_t, t, Conditions, drop_text, drop_image)."""

    # Wan's pipelines feed the scheduler's own (integer) timesteps at sampling; the core does the same for it
    uses_scheduler_timesteps = True
    micro_conditioning: tuple[str, ...] = ()
    lora_prefix = ""  # LoRA keys `transformer.blocks.N...`: diffusers' Wan LoRA names (nets/lora.py)

    def __init__(self, path: str | os.PathLike | None = None, config: dict[str, Any] | None = None,
                 dtype: str = "float32", p_drop_text: float = 0.1, p_drop_image: float = 0.0,
                 p_drop_both: float = 0.0, gradient_checkpointing: bool = False,
                 architecture: str | None = None, expand_timesteps: bool = False,
                 subfolder: str = "transformer", storage_dtype: str | None = None) -> None:
        super().__init__()
        from diffusers import WanTransformer3DModel

        if path is not None and config is not None:
            raise ValueError("WanDenoiser takes a diffusers folder (path=DIR, e.g. init_from=DIR) or an architecture "
                             "(config={...}), not both")
        if path is None and config is None and architecture is None:
            raise ValueError("WanDenoiser needs a diffusers folder (path=DIR, e.g. init_from=DIR), an architecture "
                             "(config={...}) or a released one by name (architecture=wan2.1-i2v-14b)")
        self.subfolder = subfolder  # a two-expert folder's transformer_2 (Wan2.2 A14B's low-noise expert)
        if path is not None:
            found = read_config(path, subfolder)
        else:  # random init (tests, bench plan on FakeTensors) of a given or released architecture
            found = dict(config) if config is not None else released_architecture(str(architecture))
        wrong = differences(found, architecture) if architecture else []
        if wrong:  # another released model's folder: refused before reading gigabytes
            raise WantrainError(f"{path or 'model.net.config'} is not the {architecture} this experiment trains "
                                f"({'; '.join(wrong)}): pass that model's diffusers folder, or set "
                                "model.net.architecture to the folder's model")
        self.load_report: InitReport | None = None
        if path is not None:
            self.transformer, self.load_report = load_pretrained(WanTransformer3DModel, path, subfolder,
                                                                 getattr(torch, str(dtype)))
        else:
            self.transformer = cast_like_diffusers(WanTransformer3DModel(**found), getattr(torch, str(dtype)))
        self.rates = check_dropout_rates((p_drop_text, p_drop_image, p_drop_both))
        if storage_dtype:  # frozen (LoRA) bases: weights kept in e.g. float8_e4m3fn, each layer upcast to `dtype`
            self.transformer.enable_layerwise_casting(storage_dtype=getattr(torch, str(storage_dtype)),
                                                      compute_dtype=getattr(torch, str(dtype)))
        if gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        cfg = self.transformer.config
        _, patch_h, patch_w = cfg.patch_size
        if patch_h != patch_w:
            raise ValueError(f"Wan patch size {cfg.patch_size}: wantrain needs square spatial patches")
        self.out_channels = self.in_channels = int(cfg.out_channels)
        self.concat_channels = int(cfg.in_channels) - self.in_channels  # I2V: 4 mask + 16 first-frame latents
        self.downscale = int(patch_h)  # latent positions per token side: sizes must divide by VAE factor x this
        self.text_dim = int(cfg.text_dim)
        self.image_dim = None if cfg.image_dim is None else int(cfg.image_dim)
        # Wan2.2 TI2V-5B (diffusers' `expand_timesteps`): the first-frame latents replace frame 0 of x_t, whose
        # tokens get timestep 0; frame 0 is then given, not predicted (see `given_frames`)
        self.expand_timesteps = bool(expand_timesteps)
        if self.expand_timesteps and (self.concat_channels or self.image_dim is not None):
            raise ValueError("expand_timesteps (Wan2.2 TI2V) takes the image in frame 0 of the latents: a transformer "
                             "with CLIP states or channel conditioning (Wan2.1 I2V) does not")

    @property
    def takes_image(self) -> bool:
        """Whether the model is conditioned on the first frame (I2V): CLIP states and/or channel conditioning."""
        return self.image_dim is not None or self.concat_channels > 0 or self.expand_timesteps

    def expected_concat(self, channels: int) -> int:
        """Channel conditioning width for `channels`-channel latents: 0 (T2V), else C + the mask channels."""
        return 0 if self.concat_channels == 0 else channels + WAN_MASK_CHANNELS

    def given_frames(self, drop_image: torch.Tensor, num_frames: int, device: torch.device | str,
                     ) -> torch.Tensor | None:
        """(B, T') True on the latent frames the model is given clean (TI2V: frame 0 unless the image is dropped);
        None without `expand_timesteps` (every frame is predicted)."""
        if not self.expand_timesteps:
            return None
        given = torch.zeros(len(drop_image), num_frames, dtype=torch.bool, device=device)
        given[:, 0] = ~drop_image.to(device)
        return given

    def sample_dropout(self, batch_size: int, device: torch.device | str | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample CFG dropout -> (drop_text (B,) bool, drop_image (B,) bool)."""
        return draw_dropout(batch_size, self.rates, device, generator)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any, drop_text: torch.Tensor,
                drop_image: torch.Tensor) -> torch.Tensor:
        """Velocity (B, C, T', h, w) for noisy latents x_t at timesteps t (B,) under `cond` (`Conditions`)."""
        dtype = self.transformer.patch_embedding.weight.dtype
        text = cond.text * cond.text_mask[..., None].to(cond.text.dtype)  # zero after the prompt, as Wan pads
        text = torch.where(drop_text.view(-1, 1, 1), torch.zeros_like(text), text)
        if text.shape[1] > WAN_TEXT_LENGTH:
            raise ValueError(f"Wan takes {WAN_TEXT_LENGTH} text tokens, got {text.shape[1]}: set "
                             f"model.text_encoder.max_length={WAN_TEXT_LENGTH}")
        # always 512 tokens, zero after the prompt, as Wan's pipelines pad (cached states are stored unpadded);
        # the cross-attention sees the zero tokens too, and I2V splits the image tokens off at 512
        text = torch.nn.functional.pad(text, (0, 0, 0, WAN_TEXT_LENGTH - text.shape[1]))
        keep = (~drop_image).to(x_t.dtype)
        if self.expand_timesteps:  # pipeline_wan_i2v.py: latent_model_input = (1 - mask) * condition + mask * latents
            given = self.given_frames(drop_image, x_t.shape[2], x_t.device)  # (B, T')
            x_t = torch.where(given[:, None, :, None, None], cond.frames.to(x_t.dtype), x_t)
            per_token = (x_t.shape[3] // self.downscale) * (x_t.shape[4] // self.downscale)
            t = torch.where(given, torch.zeros_like(given, dtype=x_t.dtype), t.to(x_t.dtype)[:, None])
            t = t.repeat_interleave(per_token, dim=1)  # (B, T' h w / p^2): 0 on the given frame's tokens
        inputs, image = [x_t], None
        if self.concat_channels:
            mask_channels = self.concat_channels - cond.frames.shape[1]
            condition = wan_channel_condition(cond.frames.to(x_t.dtype), cond.image_frames, mask_channels)
            inputs.append(condition * keep.view(-1, 1, 1, 1, 1))
        if self.image_dim is not None:
            image = (cond.image_tokens * keep.view(-1, 1, 1)).to(dtype)
        out = self.transformer(torch.cat(inputs, dim=1).to(dtype), t, encoder_hidden_states=text.to(dtype),
                               encoder_hidden_states_image=image, return_dict=False)[0]
        return out
