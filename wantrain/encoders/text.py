"""Frozen T5 / UMT5 text encoder: captions -> (B, L, D_t) token embeddings + mask."""

from __future__ import annotations

import os

import torch

from wantrain.encoders.frozen import FrozenModule, has_weights, load_transformers_model, parse_dtype, resolve_local

KINDS = {"t5": ("t5", "mt5"), "umt5": ("umt5",)}  # kind -> accepted config.model_type
WEIGHT_STEMS = ("model", "pytorch_model")
HINT = (
    "download weights where there is internet, e.g. `hf download google/umt5-xxl --local-dir DIR` "
    "(or google/t5-v1_1-xxl), copy DIR here and set its path; or build a tiny random one with "
    "wantrain.encoders.tiny.build_tiny_t5"
)


def resolve_text_dirs(path: str | os.PathLike) -> tuple[str, str]:
    """Return (model_dir, tokenizer_dir) for a model dir, a diffusers pipeline dir (text_encoder/ +
    tokenizer/) or a cached hub id; raise one clear line if files are missing."""
    root = resolve_local(path, "text encoder", HINT)
    model_dir = root / "text_encoder" if (root / "text_encoder" / "config.json").exists() else root
    tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else model_dir
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{path} has no config.json (nor text_encoder/config.json): {HINT}")
    if not has_weights(model_dir, WEIGHT_STEMS):
        raise FileNotFoundError(
            f"{model_dir} has config.json but no weights (model.safetensors, pytorch_model.bin or a sharded "
            f"*.index.json): {HINT}"
        )
    if not ((tok_dir / "spiece.model").exists() or (tok_dir / "tokenizer.json").exists()):
        raise FileNotFoundError(f"{tok_dir} has no tokenizer (spiece.model or tokenizer.json): {HINT}")
    return str(model_dir), str(tok_dir)


class FrozenTextEncoder(FrozenModule):
    """Frozen T5 / UMT5 encoder + tokenizer; forward(captions) -> (emb (B, L, D) float32, mask (B, L) bool)."""

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str = "t5",
        max_length: int = 77,
        dtype: str | torch.dtype = "float32",
        padding: str = "longest",
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoTokenizer, T5EncoderModel, UMT5EncoderModel

        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not supported: use one of {sorted(KINDS)}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding={padding!r} is not supported: use 'longest' or 'max_length'")
        model_dir, tok_dir = resolve_text_dirs(path)
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        if config.model_type not in KINDS[kind]:
            raise ValueError(
                f"{path} holds a {config.model_type!r} model but kind={kind!r}: set kind to "
                f"{'umt5' if config.model_type == 'umt5' else 't5'}"
            )
        self.path, self.kind, self.max_length, self.padding = str(path), kind, max_length, padding
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        cls = UMT5EncoderModel if kind == "umt5" else T5EncoderModel
        self._freeze("model", load_transformers_model(cls, model_dir, HINT, dtype=parse_dtype(dtype)))
        self.dim: int = config.d_model

    @property
    def model(self) -> torch.nn.Module:
        """The frozen transformers encoder."""
        return self._frozen["model"]

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> (input_ids (B, L) long, attention_mask (B, L) long), truncated to max_length."""
        if isinstance(captions, str):
            raise TypeError("FrozenTextEncoder takes a list of captions, not a single string")
        enc = self.tokenizer(
            list(captions), padding=self.padding, max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"]

    @torch.no_grad()
    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode captions: (emb (B, L, D) float32, zero at padding; mask (B, L) bool, True = real token)."""
        ids, mask = self.tokenize(captions)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        emb = hidden.float() * mask[..., None].float()
        return emb, mask.bool()
