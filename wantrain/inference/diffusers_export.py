"""`sample export=DIR format=diffusers`: a trained Wan backbone written back as the diffusers pipeline folder it came
from (`WanImageToVideoPipeline` for I2V, `WanPipeline` for T2V), so `from_pretrained(DIR)` loads it and ComfyUI's
diffusers loaders read it; the trained transformer (LoRA merged) with the frozen parts the run used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wantrain.encoders.frozen import parse_dtype
from wantrain.encoders.image import clip_folders
from wantrain.encoders.text import resolve_text_dirs
from wantrain.encoders.vae import resolve_vae_dir
from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import SavedModel, build_diffusion, load_weights


def _node(config: dict[str, Any], name: str) -> dict[str, Any]:
    node = config.get(name) or {}
    if not node.get("path"):
        raise WantrainError(f"format=diffusers needs the run's model.{name} (a folder) to write the pipeline's "
                            f"{name}; this model was trained without it")
    return node


def export_diffusers(saved: SavedModel, out: str | Path) -> Path:
    """Write `out/` = model_index.json, transformer/ (the trained weights), vae/, text_encoder/, tokenizer/,
    [image_encoder/, image_processor/,] scheduler/ (UniPC in flow mode with the run's sampling shift)."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, UMT5EncoderModel

    config = saved.config
    if not config.get("net"):
        raise WantrainError(f"format=diffusers writes a Wan backbone (model.net); {saved.source} is a UNet model: "
                            "export it with format=wantrain")
    model = load_weights(build_diffusion(config), saved.state, f"{saved.source} diffusion model")
    transformer = model.denoiser.transformer
    text, vae_node = _node(config, "text_encoder"), _node(config, "vae")
    model_dir, tok_dir = resolve_text_dirs(text["path"])
    parts: dict[str, Any] = {
        "transformer": transformer,
        "tokenizer": AutoTokenizer.from_pretrained(tok_dir, local_files_only=True),
        "text_encoder": UMT5EncoderModel.from_pretrained(model_dir, torch_dtype=parse_dtype(text.get("dtype",
                                                         "float32")), local_files_only=True),
        "vae": AutoencoderKLWan.from_pretrained(str(resolve_vae_dir(vae_node["path"], "wan")), local_files_only=True,
                                                torch_dtype=parse_dtype(vae_node.get("dtype", "float32"))),
        # the sampler `wantrain sample` uses: UniPC (flow), its shift from the run's sampling (else training's)
        "scheduler": model.schedule.sampler("unipc", shift=(config.get("sampling") or {}).get("shift")),
    }
    if model.denoiser.image_dim is not None:
        image = _node(config, "image_encoder")
        clip_dir, processor_dir = clip_folders(image["path"])
        parts["image_encoder"] = CLIPVisionModel.from_pretrained(str(clip_dir), local_files_only=True,
                                                                 torch_dtype=parse_dtype(image.get("dtype", "float32")))
        parts["image_processor"] = CLIPImageProcessor.from_pretrained(str(processor_dir), local_files_only=True)
        pipeline = WanImageToVideoPipeline(**parts)
    elif model.denoiser.expand_timesteps:  # Wan2.2 TI2V: the image in frame 0 of the latents, no CLIP
        pipeline = WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None, expand_timesteps=True)
    else:
        pipeline = WanPipeline(**parts)
    out = Path(out)
    pipeline.save_pretrained(str(out), safe_serialization=True)
    return out
