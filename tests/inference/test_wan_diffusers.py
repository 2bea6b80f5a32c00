"""The Wan backbone against diffusers' own pipeline: a 4-step UniPC sample through wantrain (its encoders, VAE,
conditioning and sampler) equals `WanImageToVideoPipeline(..., output_type="latent")` from the same folder, seed and
guidance; LoRA files in diffusers' and ComfyUI's (original Wan) names load in diffusers to the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.model import VideoDiffusion
from wantrain.inference.base import BaseModel
from wantrain.nets.wan import WanDenoiser

STEPS, SCALE, SEED, PROMPT = 4, 5.0, 7, "a red ball rolls to the left"


def wan_base(wan_dir, size: int = 32, expand_timesteps: bool = False) -> BaseModel:
    """The tiny folder as `wantrain sample` builds a Wan checkpoint: the backbone, umT5 (512 tokens), CLIP block -2
    (none for TI2V) and the Wan VAE, all from the one folder; UniPC with the folder's flow shift."""
    net = WanDenoiser(path=wan_dir, expand_timesteps=expand_timesteps)
    config = {"num_frames": 9, "resolution": [size, size], "space": "latent",
              "sampling": {"sampler": "unipc", "num_steps": STEPS, "text_scale": SCALE, "shift": 3.0},
              "text_encoder": {"_target_": "wantrain.encoders.text.FrozenTextEncoder", "path": str(wan_dir),
                               "kind": "umt5", "max_length": 512, "padding": "max_length"},
              "image_encoder": {"_target_": "wantrain.encoders.image.FrozenImageEncoder", "path": str(wan_dir),
                                "backend": "clip", "block": -2},
              "vae": {"_target_": "wantrain.encoders.vae.FrozenVAE", "path": f"{wan_dir}/vae", "kind": "wan"}}
    base = BaseModel(VideoDiffusion(None, None, FlowMatching(shift=3.0), net=net).eval(), config)
    base.load_encoders()
    return base


def first_frame(size: int = 32) -> tuple[Image.Image, torch.Tensor]:
    """A size x size RGB image (32: the tiny CLIP's own size) and the same in [-1, 1] (1, 3, size, size)."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    pixels = np.stack([ramp[None].repeat(size, 0), ramp[:, None].repeat(size, 1),
                       np.full((size, size), 90, np.uint8)], -1)
    return Image.fromarray(pixels), torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1


def diffusers_latents(pipe, image: Image.Image, size: int = 32) -> torch.Tensor:
    """The pipeline's latents for the same prompt and seed; the unconditional branch on zero text states, as
    wantrain trains it (caption dropout zeroes the states)."""
    negative = torch.zeros(1, 512, pipe.text_encoder.config.d_model)
    return pipe(image=image, prompt=PROMPT, negative_prompt_embeds=negative, height=size, width=size, num_frames=9,
                num_inference_steps=STEPS, guidance_scale=SCALE, generator=torch.Generator().manual_seed(SEED),
                output_type="latent").frames


def test_unipc_sample_equals_the_diffusers_pipeline(wan_dir) -> None:
    from diffusers import WanImageToVideoPipeline

    base = wan_base(wan_dir)
    pil, image = first_frame()
    cond = base.conditions(image, [PROMPT], 9)
    ours = base.model.sample_from_seeds(cond, [SEED], clip_sample=False, **base.settings())
    pipe = WanImageToVideoPipeline.from_pretrained(str(wan_dir))
    theirs = diffusers_latents(pipe, pil)
    assert ours.shape == theirs.shape == (1, 4, 3, 4, 4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    unguided = base.model.sample_from_seeds(cond, [SEED], clip_sample=False, **base.settings(text_scale=1.0))
    assert (unguided - theirs).abs().max() > 1e-2  # the comparison sees guidance


@pytest.mark.slow
def test_text_to_video_backbone_trains_and_goes_back_to_a_wan_pipeline(data_dir, tmp_path, wantrain_main) -> None:
    """A T2V folder (text states only, 4 channels in): fit, `sample export format=diffusers` -> `WanPipeline`,
    whose 4-step sample equals wantrain's."""
    from diffusers import WanPipeline

    from wantrain.encoders.tiny_wan import build_tiny_wan
    from wantrain.inference.checkpoints import read_saved

    t2v = build_tiny_wan(tmp_path / "tiny-wan-t2v", task="t2v")
    run = tmp_path / "runs" / "t2v"
    assert wantrain_main(["fit", "+experiment=wan_tiny_i2v", f"init_from={t2v}", "model.image_encoder=null",
                          f"paths.data_dir={data_dir}", f"run_dir={run}", "trainer.max_steps=2", "data.batch_size=2",
                          "trainer.limit_val_batches=1", "model.sampling.every_n_steps=0", "logger=csv",
                          "print_config=false", f"model.sampling.num_steps={STEPS}",
                          f"model.sampling.text_scale={SCALE}"], tmp_path) == 0
    out = tmp_path / "t2v-diffusers"
    assert wantrain_main(["sample", f"base_ckpt={run}", f"export={out}", "format=diffusers"], tmp_path) == 0
    pipe = WanPipeline.from_pretrained(str(out))
    base = BaseModel.from_saved(read_saved(run))
    assert base.model.denoiser.concat_channels == 0 and base.encoders.image is None
    ours = base.model.sample_from_seeds(base.conditions(first_frame()[1], [PROMPT], 9), [SEED], clip_sample=False,
                                        **base.settings())
    negative = torch.zeros(1, 512, pipe.text_encoder.config.d_model)
    theirs = pipe(prompt=PROMPT, negative_prompt_embeds=negative, height=32, width=32, num_frames=9,
                  num_inference_steps=STEPS, guidance_scale=SCALE, generator=torch.Generator().manual_seed(SEED),
                  output_type="latent").frames
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_ti2v_first_frame_in_the_latents_equals_the_diffusers_pipeline(tmp_path) -> None:
    """Wan2.2 TI2V's design (a residual 16x VAE, no CLIP): the first frame's latents replace frame 0 of x_t with
    timestep 0 on its tokens; a 4-step sample equals `WanImageToVideoPipeline(expand_timesteps=True)`'s, and the
    training loss leaves the given frame out (DiffSynth-Studio's FlowMatchSFTLoss)."""
    from diffusers import WanImageToVideoPipeline

    from wantrain.encoders.tiny_wan import build_tiny_wan

    folder = build_tiny_wan(tmp_path / "tiny-wan-ti2v", task="ti2v")
    base = wan_base(folder, size=64, expand_timesteps=True)
    assert base.space.spatial_factor == 16 and base.model.condition_dims()[1] is None
    pil, image = first_frame(64)
    cond = base.conditions(image, [PROMPT], 9)
    ours = base.model.sample_from_seeds(cond, [SEED], clip_sample=False, **base.settings())
    pipe = WanImageToVideoPipeline.from_pretrained(str(folder))
    assert pipe.config.expand_timesteps and pipe.image_encoder is None
    theirs = diffusers_latents(pipe, pil, size=64)
    assert ours.shape == theirs.shape == (1, 4, 3, 4, 4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours[:, :, :1], cond.frames[:, :, :1])  # frame 0 is the given image's latents

    x0 = torch.randn(2, 4, 3, 4, 4)
    other = x0.clone()
    other[:, :, 0] += 1.0  # another frame 0: not part of the loss while the image is given
    t = torch.tensor([700.0, 300.0])
    pair = cond.repeat(2)
    with torch.no_grad():
        a, b = (base.model.loss(x, pair, t, torch.Generator().manual_seed(0), dropout=False)[0] for x in (x0, other))
    torch.testing.assert_close(a, b)
    dropped = base.model.denoiser.given_frames(torch.tensor([True, False]), 3, "cpu")
    assert dropped.tolist() == [[False, False, False], [True, False, False]]  # image dropped: frame 0 is predicted
