"""Frozen feature networks of the video-quality metrics, loaded from local folders (never downloaded): CLIP
(transformers `CLIPModel` + `CLIPProcessor`, as torchmetrics' CLIPScore), DINO (transformers `AutoModel`: ViT
`facebook/dino-vitb16` as VBench, or DINOv2) and MUSIQ (pyiqa, VBench's imaging quality)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def to_uint8_range(frames: torch.Tensor) -> list[torch.Tensor]:
    """Frames (N, 3, H, W) in [-1, 1] -> [(3, H, W) float in 0..255 on the CPU]: what the processors take (their
    rescale divides by 255)."""
    return list(((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().cpu())


class CLIPFeatures:
    """Unit-norm CLIP image and text embeddings, preprocessed by the folder's own processor (torchmetrics'
    `_get_features`)."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.path, self.device = str(path), torch.device(device)
        self.model = CLIPModel.from_pretrained(self.path).eval().to(self.device)
        self.processor = CLIPProcessor.from_pretrained(self.path)

    @torch.no_grad()
    def images(self, frames: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Frames (N, 3, H, W) in [-1, 1] -> (N, D) unit embeddings."""
        out = []
        for part in frames.split(chunk):
            pixels = self.processor(images=to_uint8_range(part), return_tensors="pt", padding=True)["pixel_values"]
            out.append(_embedding(self.model.get_image_features(pixels.to(self.device))))
        return F.normalize(torch.cat(out).float(), dim=-1)

    @torch.no_grad()
    def texts(self, captions: list[str]) -> torch.Tensor:
        """Captions -> (N, D) unit embeddings (truncated to the text model's length, as torchmetrics)."""
        tokens = self.processor(text=list(captions), return_tensors="pt", padding=True)
        limit = self.model.config.text_config.max_position_embeddings
        ids, mask = tokens["input_ids"][..., :limit], tokens["attention_mask"][..., :limit]
        return F.normalize(_embedding(self.model.get_text_features(ids.to(self.device), mask.to(self.device))).float(),
                           dim=-1)


class DINOFeatures:
    """Unit-norm DINO (ViT / DINOv2) CLS features of frames, preprocessed by the folder's image processor."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, ViTModel

        self.path, self.device = str(path), torch.device(device)
        if AutoConfig.from_pretrained(self.path).model_type == "vit":  # DINO v1: its checkpoints have no pooler
            self.model = ViTModel.from_pretrained(self.path, add_pooling_layer=False)
        else:
            self.model = AutoModel.from_pretrained(self.path)
        self.model = self.model.eval().to(self.device)
        self.processor = AutoImageProcessor.from_pretrained(self.path)

    @torch.no_grad()
    def images(self, frames: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Frames (N, 3, H, W) in [-1, 1] -> (N, D) unit CLS features (after the final layer norm)."""
        out = []
        for part in frames.split(chunk):
            pixels = self.processor(images=to_uint8_range(part), return_tensors="pt")["pixel_values"]
            out.append(self.model(pixel_values=pixels.to(self.device)).last_hidden_state[:, 0])
        return F.normalize(torch.cat(out).float(), dim=-1)


def _embedding(output: torch.Tensor | object) -> torch.Tensor:
    """`get_*_features` return a tensor (transformers 4) or an output with `pooler_output` (transformers 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class MUSIQScore:
    """VBench's imaging quality: MUSIQ (pyiqa's architecture, e.g. the SPAQ checkpoint) on each frame, the longer
    side brought to at most 512 px (VBench `imaging_quality` mode 'longer'), score / 100."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        try:
            from pyiqa.archs.musiq_arch import MUSIQ
        except ImportError:
            raise ImportError("imaging quality needs pyiqa's MUSIQ: pip install pyiqa (or -e '.[quality]')") from None
        self.path, self.device = str(path), torch.device(device)
        self.model = MUSIQ(pretrained_model_path=self.path).eval().to(self.device)

    @torch.no_grad()
    def frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (N, 3, H, W) in [-1, 1] -> quality (N,) in about [0, 1]."""
        x = (frames.float().clamp(-1, 1) + 1) / 2
        h, w = x.shape[-2:]
        if max(h, w) > 512:
            s = 512 / max(h, w)
            x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                              align_corners=False)
        return torch.cat([self.model(part.to(self.device)).flatten() for part in x.split(16)]).float().cpu() / 100
