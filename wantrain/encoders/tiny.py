"""Tiny random encoders with the real architectures, saved in the real hub layouts (offline)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

MARKER = "wantrain_tiny.json"  # records how a tiny model was built; makes builds idempotent
_LOCK = threading.RLock()  # seeding the global RNG is not thread-safe; re-entrant: a pipeline builds its parts


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' tqdm bars and load reports off inside the block (restored after): a tiny build loads a CLIP
    vision model out of a full CLIP folder, whose text weights it reports as unexpected."""
    from transformers.utils import logging as transformers_logging

    bars, verbosity = transformers_logging.is_progress_bar_enabled(), transformers_logging.get_verbosity()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def _build_atomic(path: str | os.PathLike, spec: dict, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_dir)` then rename tmp_dir to `path`; reuse `path` if built with the same spec."""
    path = Path(path)
    marker = path / MARKER
    if marker.exists():
        found = json.loads(marker.read_text())
        if found != spec:
            raise ValueError(
                f"{path} holds a tiny model built with {found}, not {spec}: remove it or pick another path"
            )
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not a tiny wantrain model: remove it or pick another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with _LOCK, torch.random.fork_rng(devices=[]), _quiet_transformers():  # the caller's RNG state stays
            write(tmp)
        (tmp / MARKER).write_text(json.dumps(spec, sort_keys=True))
        if path.exists():  # an empty directory left by someone: replace it
            path.rmdir()
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (path / MARKER).exists():  # another process won the race with the same build
            return _build_atomic(path, spec, write)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _train_sentencepiece(out_dir: Path, captions: list[str], vocab_size: int) -> None:
    """Train a unigram sentencepiece model on `captions` into out_dir/spiece.model (pad 0, eos 1, unk 2 as T5)."""
    import sentencepiece as spm

    if not captions:
        raise ValueError("build_tiny_t5 needs a non-empty list of captions to train its tokenizer")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        hard_vocab_limit=False,  # small corpora yield fewer pieces than asked for
        shuffle_input_sentence=False,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    (out_dir / "spiece.model").write_bytes(buf.getvalue())


def _save_t5_family(
    out: Path, captions: list[str], seed: int, kind: str, d_model: int, num_layers: int, num_heads: int, vocab_size: int
) -> None:
    """Write tokenizer (spiece.model + tokenizer.json + config) and a random encoder to `out`."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer, UMT5Config, UMT5EncoderModel

    _train_sentencepiece(out, list(captions), vocab_size)
    tok = T5Tokenizer.from_pretrained(str(out), extra_ids=0)
    tok.save_pretrained(str(out))
    cfg_cls, model_cls = (T5Config, T5EncoderModel) if kind == "t5" else (UMT5Config, UMT5EncoderModel)
    config = cfg_cls(
        vocab_size=len(tok),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",  # as t5-v1_1 / umt5
        dropout_rate=0.0,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(str(out))


def build_tiny_t5(
    path: str | os.PathLike,
    captions: Iterable[str],
    seed: int = 0,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 256,
    kind: str = "t5",
) -> Path:
    """Build a random T5 encoder + sentencepiece tokenizer (google/t5-v1_1 layout; `kind="umt5"`: google/umt5-xxl
    layout) at `path`; returns the path."""
    captions = list(captions)
    spec = dict(kind=kind, seed=seed, d_model=d_model, num_layers=num_layers, num_heads=num_heads,
                vocab_size=vocab_size, n_captions=len(captions), captions_hash=_hash(captions))
    return _build_atomic(
        path, spec, lambda out: _save_t5_family(out, captions, seed, kind, d_model, num_layers, num_heads, vocab_size)
    )


def build_tiny_umt5(path: str | os.PathLike, captions: Iterable[str], **kwargs: Any) -> Path:
    """Build a random UMT5 encoder + sentencepiece tokenizer (google/umt5-xxl layout) at `path`; returns the path."""
    return build_tiny_t5(path, captions, kind="umt5", **kwargs)


def _hash(captions: list[str]) -> str:
    """Stable digest of a caption list (for the build marker)."""
    import hashlib

    return hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16]


def build_tiny_dit(
    path: str | os.PathLike,
    seed: int = 0,
    sample_size: int = 8,
    num_layers: int = 2,
    num_heads: int = 2,
    head_dim: int = 16,
    num_classes: int = 10,
) -> Path:
    """Build a random DiT + AutoencoderKL (facebook/DiT-XL-2-256 layout: transformer/, vae/) at `path`.

    The VAE downsamples by 8 like the real one, so images are `8 * sample_size` pixels
    (64 by default) and give `(sample_size / 2) ** 2` tokens of width `num_heads * head_dim`.
    """
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    spec = dict(kind="dit", seed=seed, sample_size=sample_size, num_layers=num_layers, num_heads=num_heads,
                head_dim=head_dim, num_classes=num_classes)

    def write(out: Path) -> None:
        torch.manual_seed(seed)
        DiTTransformer2DModel(
            num_attention_heads=num_heads,
            attention_head_dim=head_dim,
            in_channels=4,
            out_channels=8,  # learned sigma, as DiT-XL/2
            num_layers=num_layers,
            sample_size=sample_size,
            patch_size=2,
            num_embeds_ada_norm=num_classes,
        ).save_pretrained(str(out / "transformer"))
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[8, 8, 16, 16],
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=8 * sample_size,
            scaling_factor=0.18215,
        ).save_pretrained(str(out / "vae"))

    return _build_atomic(path, spec, write)


def build_tiny_clip(
    path: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
) -> Path:
    """Build a random CLIP (laion/CLIP-ViT-H-14 layout: CLIPModel config.json + preprocessor_config.json) at `path`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    spec = dict(kind="clip", seed=seed, image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                num_layers=num_layers, num_heads=num_heads)

    def write(out: Path) -> None:
        config = CLIPConfig(
            text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=16),
            vision_config=dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                               num_hidden_layers=num_layers, num_attention_heads=num_heads,
                               image_size=image_size, patch_size=patch_size, hidden_act="gelu"),
            projection_dim=16,
        )
        torch.manual_seed(seed)
        CLIPModel(config).save_pretrained(str(out))
        CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ).save_pretrained(str(out))

    return _build_atomic(path, spec, write)


def _synthetic_clips(seed: int, count: int, num_frames: int, size: int) -> torch.Tensor:
    """`count` synthetic clips (N, 3, T, H, W) in [-1, 1] (wantrain.data.synthetic) to fit / calibrate tiny VAEs."""
    from wantrain.data.synthetic import clip_spec, render_clip

    clips = [render_clip(clip_spec(seed, i), seed, i, num_frames, size) for i in range(count)]  # (T, H, W, 3) uint8
    return torch.stack([torch.from_numpy(c).permute(3, 0, 1, 2) for c in clips]).float() / 127.5 - 1


def _per_frame(video: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) -> (N*T, 3, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)


def _fit_tiny_vae(vae: torch.nn.Module, clips: torch.Tensor, steps: int, batch: int, lr: float = 2e-3) -> None:
    """Fit `vae` briefly to reconstruct `clips` (L1 on the posterior mean, a small latent L2 penalty)."""
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    for _ in range(steps):
        x = clips[torch.randint(len(clips), (batch,))]
        mu = vae.encode(x).latent_dist.mean
        loss = (vae.decode(mu).sample - x).abs().mean() + 1e-3 * mu.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval()


@torch.no_grad()
def _latent_stats(vae: torch.nn.Module, clips: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Mean and std of the VAE's latent means over `dims` (how real VAEs' normalisation constants are measured)."""
    mu = vae.encode(clips).latent_dist.mean.double()
    return mu.mean(dims), mu.std(dims)


def build_tiny_wan_vae(
    path: str | os.PathLike,
    seed: int = 0,
    base_dim: int = 8,
    z_dim: int = 4,
    train_steps: int = 0,
    wan22: bool = False,
) -> Path:
    """Build a random AutoencoderKLWan (Wan-AI/Wan2.1-*-Diffusers vae/ layout: 8x space, 4x time, `z_dim` channels;
    `wan22`: the Wan2.2 VAE's design, residual with 2x2 patches: 16x space) at `path`; `latents_mean`/`latents_std`
    measured on synthetic clips, after `train_steps` of fitting them (150 steps: ~35 s on 2 CPU cores, held-out
    PSNR 15 dB vs 12.6 untrained: blurry but not noise)."""
    from diffusers import AutoencoderKLWan

    spec = dict(kind="wan_vae", seed=seed, base_dim=base_dim, z_dim=z_dim, train_steps=train_steps)
    # Wan2.2's VAE (Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json): is_residual, patch_size 2 on 12 channels
    wan22_kw = dict(is_residual=True, patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=16)
    if wan22:
        spec["wan22"] = True

    def write(out: Path) -> None:
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * z_dim,
                               latents_std=[1.0] * z_dim, **(wan22_kw if wan22 else {})).eval()
        clips = _synthetic_clips(seed, 64 if train_steps else 8, 9, 32)  # (N, 3, 9, 32, 32)
        if train_steps:
            _fit_tiny_vae(vae, clips, train_steps, batch=2)
        mean, std = _latent_stats(vae, clips[:8], (0, 2, 3, 4))
        vae.register_to_config(latents_mean=[round(v, 5) for v in mean.tolist()],
                               latents_std=[round(v, 5) for v in std.tolist()])
        vae.save_pretrained(str(out))

    return _build_atomic(path, spec, write)


def build_tiny_kl_vae(
    path: str | os.PathLike,
    seed: int = 0,
    base_dim: int = 8,
    latent_channels: int = 4,
    train_steps: int = 0,
) -> Path:
    """Build a random AutoencoderKL (stabilityai/sd-vae-ft-mse layout: 8x space, `latent_channels` channels) at
    `path`; `shift_factor`/`scaling_factor` measured on synthetic frames, after `train_steps` of fitting them
    (400 steps: ~35 s on 2 CPU cores, held-out PSNR 17 dB vs 12.9 untrained)."""
    from diffusers import AutoencoderKL

    spec = dict(kind="kl_vae", seed=seed, base_dim=base_dim, latent_channels=latent_channels, train_steps=train_steps)

    def write(out: Path) -> None:
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[base_dim, base_dim, 2 * base_dim, 2 * base_dim],
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=32,
        ).eval()
        frames = _per_frame(_synthetic_clips(seed, 64 if train_steps else 8, 9, 32))  # (N*9, 3, 32, 32)
        if train_steps:
            _fit_tiny_vae(vae, frames, train_steps, batch=32, lr=5e-3)
        mean, std = _latent_stats(vae, frames[:72], (0, 1, 2, 3))  # the first 8 clips
        vae.register_to_config(shift_factor=round(mean.item(), 5), scaling_factor=round(1.0 / std.item(), 5))
        vae.save_pretrained(str(out))

    return _build_atomic(path, spec, write)
