"""FrozenTextEncoder on tiny T5 / UMT5 models loaded from disk like real weights."""

from __future__ import annotations

import shutil

import pytest
import sentencepiece as spm
import torch
from torch import nn

from wantrain.encoders.text import FrozenTextEncoder


@pytest.mark.parametrize("kind", ["t5", "umt5"])
def test_shapes_mask_and_padding_zeroed(tiny_dir, kind, captions):
    enc = FrozenTextEncoder(tiny_dir / kind, kind=kind)
    emb, mask = enc(captions[:4])
    lengths = [len(enc.tokenizer(c).input_ids) for c in captions[:4]]
    assert emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert emb.shape == (4, max(lengths), enc.dim) and enc.dim == 32
    assert mask.sum(1).tolist() == lengths
    assert torch.all(emb[~mask] == 0)
    assert emb[mask].abs().sum(-1).min() > 0


@pytest.mark.parametrize("kind", ["t5", "umt5"])
def test_same_caption_alone_or_padded_in_a_batch(tiny_dir, kind, captions):
    enc = FrozenTextEncoder(tiny_dir / kind, kind=kind)
    short, long = "a red ball", captions[4] + " " + captions[3]
    alone, alone_mask = enc([short])
    batch, batch_mask = enc([long, short])
    n = int(alone_mask.sum())
    assert int(batch_mask[1].sum()) == n and batch.shape[1] > n
    torch.testing.assert_close(batch[1, :n], alone[0, :n], atol=1e-5, rtol=1e-4)


def test_tokenizer_really_tokenizes(tiny_dir, captions):
    enc = FrozenTextEncoder(tiny_dir / "t5")
    sp = spm.SentencePieceProcessor(model_file=str(tiny_dir / "t5" / "spiece.model"))
    ids, mask = enc.tokenize([captions[0]])
    assert ids[0].tolist() == sp.encode(captions[0]) + [sp.eos_id()]
    assert (ids != enc.tokenizer.unk_token_id).float().mean() > 0.9
    assert len(set(ids[0].tolist())) > 5
    # different captions give different tokens and embeddings
    emb, _ = enc(captions[:2])
    assert not torch.allclose(emb[0, :3], emb[1, :3])


def test_max_length_truncates_and_max_length_padding(tiny_dir, captions):
    enc = FrozenTextEncoder(tiny_dir / "t5", max_length=8)
    emb, mask = enc([captions[4], "a"])
    assert emb.shape[1] == 8 and mask[0].all() and mask[1].sum() < 8
    fixed = FrozenTextEncoder(tiny_dir / "t5", max_length=40, padding="max_length")
    assert fixed(["a"])[0].shape == (1, 40, 32)


def test_frozen_not_trainable_not_in_state_dict(tiny_dir, captions):
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.text_encoder = FrozenTextEncoder(tiny_dir / "t5")
            self.head = nn.Linear(32, 1)

    holder = Holder()
    assert list(holder.text_encoder.parameters()) == []
    assert [n for n, _ in holder.named_parameters()] == ["head.weight", "head.bias"]
    assert all(not k.startswith("text_encoder") for k in holder.state_dict())
    net = holder.text_encoder.model
    assert not any(p.requires_grad for p in net.parameters())
    holder.train()
    assert not net.training
    with torch.enable_grad():
        emb, _ = holder.text_encoder(captions[:2])
    assert not emb.requires_grad
    holder.to(torch.bfloat16)  # moves the frozen net like any submodule
    assert net.shared.weight.dtype == torch.bfloat16


def test_deterministic_and_dtype(tiny_dir, captions):
    a = FrozenTextEncoder(tiny_dir / "umt5", kind="umt5")(captions)
    b = FrozenTextEncoder(tiny_dir / "umt5", kind="umt5")(captions)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    half = FrozenTextEncoder(tiny_dir / "umt5", kind="umt5", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    emb, mask = half(captions)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb, a[0], atol=0.1, rtol=0.1)


def test_clear_errors(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a hub id"):
        FrozenTextEncoder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        FrozenTextEncoder(tmp_path)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_dir / "t5", no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        FrozenTextEncoder(no_weights)
    no_tok = tmp_path / "no_tok"
    shutil.copytree(tiny_dir / "t5", no_tok)
    (no_tok / "spiece.model").unlink()
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        FrozenTextEncoder(no_tok)
    with pytest.raises(ValueError, match="kind='umt5'"):
        FrozenTextEncoder(tiny_dir / "t5", kind="umt5")
    with pytest.raises(ValueError, match="dtype"):
        FrozenTextEncoder(tiny_dir / "t5", dtype="fp8")


def test_pipeline_layout_with_subfolders(tiny_dir, tmp_path, captions):
    """A diffusers pipeline folder (text_encoder/ + tokenizer/), as Wan2.1-*-Diffusers ships, loads too."""
    root = tmp_path / "pipe"
    shutil.copytree(tiny_dir / "umt5", root / "text_encoder")
    (root / "tokenizer").mkdir()
    for name in ("spiece.model", "tokenizer.json", "tokenizer_config.json"):
        shutil.move(root / "text_encoder" / name, root / "tokenizer" / name)
    ref = FrozenTextEncoder(tiny_dir / "umt5", kind="umt5")(captions[:2])
    got = FrozenTextEncoder(root, kind="umt5")(captions[:2])
    assert torch.equal(ref[0], got[0])


def test_hub_id_resolves_from_the_local_cache_only(tiny_dir, tmp_path, monkeypatch, captions):
    """`owner/name` loads from the local Hugging Face cache (never the network)."""
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--google--umt5-tiny"
    shutil.copytree(tiny_dir / "umt5", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    got = FrozenTextEncoder("google/umt5-tiny", kind="umt5")(captions[:2])
    ref = FrozenTextEncoder(tiny_dir / "umt5", kind="umt5")(captions[:2])
    assert torch.equal(got[0], ref[0])
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        FrozenTextEncoder("google/not-cached")
