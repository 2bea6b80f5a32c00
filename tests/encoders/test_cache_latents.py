"""Latent cache: `encode` in latent space writes KEY.latent.npy / KEY.first_latent.npy, and training from them gives
the live VAE's loss without running the VAE."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from wantrain.commands import encode
from wantrain.errors import WantrainError

LATENT = ["+experiment=i2v_latent_tiny", "data.resolution=32"]  # 9 frames of 32x32 -> (4, 3, 4, 4) latents


def first_val_batch(cfg) -> dict:
    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    return next(iter(datamodule.val_dataloader()))


def vae_calls(module) -> list[str]:
    """Names of the VAE's encoder/decoder networks each time one runs."""
    calls: list[str] = []
    vae = module.space.vae.vae  # the diffusers AutoencoderKLWan inside FrozenVAE
    for name in ("encoder", "decoder"):
        getattr(vae, name).register_forward_hook(lambda m, args, out, name=name: calls.append(name))
    return calls


@pytest.fixture(scope="module")
def encoded(data_dir, tmp_path_factory):
    """The session's validation shard encoded by `encode +experiment=i2v_latent_tiny` (latents=auto)."""
    from hydra import compose, initialize_config_dir

    from wantrain.commands.launch import register_resolvers
    from wantrain.config_tree import config_dir

    root = tmp_path_factory.mktemp("latent_cache")
    out = root / "encoded"
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="encode", overrides=[f"paths.root_dir={root}", *LATENT, f"paths.data_dir={data_dir}",
                                                       f"out={out}", f"shards={data_dir}/synthetic/val-00000.tar"])
    encode.run(cfg)
    return out / "val-00000.tar"


def test_encode_writes_float16_latents_of_the_validation_clip(encoded):
    with tarfile.open(encoded) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = sorted({name.split(".", 1)[0] for name in members})
    assert len(keys) == 32
    for key in keys:
        for name in ("latent", "first_latent"):
            data = members[f"{key}.{name}.npy"]
            assert not data.startswith(b"\x80")  # npy, not a pickle
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            assert arr.dtype == np.float16 and arr.shape == (4, 3, 4, 4)
    a, b = (np.load(io.BytesIO(members[f"{keys[0]}.{n}.npy"])) for n in ("latent", "first_latent"))
    np.testing.assert_array_equal(a[:, 0], b[:, 0])  # causal VAE: the first latent frame sees only frame 0
    assert np.abs(a[:, 1:] - b[:, 1:]).mean() > 0.05  # later frames: the clip vs zero padding


def test_cached_latents_give_the_live_vae_loss_without_running_it(compose, data_dir, encoded, tmp_path):
    base = [*LATENT, f"paths.data_dir={data_dir}", "data.num_workers=0", "data.batch_size=4"]
    live_cfg = compose(*base, root=tmp_path)
    cached_cfg = compose(*base, f"data.val_shards={encoded}", "data.embeddings=[t5,dit,latent,first_latent]",
                         "model.conditioning=cached", root=tmp_path)
    live_batch, cached_batch = first_val_batch(live_cfg), first_val_batch(cached_cfg)
    assert live_batch["key"] == cached_batch["key"] and cached_batch["latent"].shape == (4, 4, 3, 4, 4)

    torch.manual_seed(0)
    live = instantiate(live_cfg.model)
    live.setup("validate")
    cached = instantiate(cached_cfg.model)
    cached.load_state_dict(live.state_dict())
    cached.setup("validate")
    calls = vae_calls(cached)  # the same frozen VAE object serves both modules (one copy per process)

    live_x0, live_cond = live.clean(live_batch), live.conditions(live_batch)
    assert calls and set(calls) == {"encoder"}  # live: the clip and its first-frame clip (in causal chunks)
    calls.clear()
    x0, cond = cached.clean(cached_batch), cached.conditions(cached_batch)
    assert calls == []  # cached: no VAE
    torch.testing.assert_close(x0, live_x0, atol=4e-3, rtol=1e-3)  # float16 cache
    torch.testing.assert_close(cond.frames, live_cond.frames, atol=4e-3, rtol=1e-3)

    t = torch.tensor([100, 400, 700, 950])
    with torch.no_grad():
        live_loss, _ = live.model.loss(live_x0, live_cond, t=t, generator=torch.Generator().manual_seed(0),
                                       dropout=False)
        cached_loss, _ = cached.model.loss(x0, cond, t=t, generator=torch.Generator().manual_seed(0), dropout=False)
    torch.testing.assert_close(cached_loss, live_loss, atol=1e-4, rtol=1e-3)
    print(f"live loss {live_loss.tolist()} cached {cached_loss.tolist()}")

    # a real Trainer step (train + validation) on the cached shard: the VAE never runs
    cached_cfg = compose(*base, f"data.train_shards={encoded}", f"data.val_shards={encoded}",
                         "data.embeddings=[t5,dit,latent,first_latent]", "model.conditioning=cached", root=tmp_path)
    trainer = pl.Trainer(accelerator="cpu", devices=1, fast_dev_run=True, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(cached, datamodule=instantiate(cached_cfg.data))
    assert trainer.state.finished and torch.isfinite(trainer.callback_metrics["train/loss"]) and calls == []


def test_latents_of_another_shape_fail_in_one_line(compose, data_dir, encoded, tmp_path):
    cfg = compose(*LATENT, f"paths.data_dir={data_dir}", "data.num_workers=0", "data.batch_size=2",
                  f"data.val_shards={encoded}", "data.embeddings=[latent]", root=tmp_path)
    batch = first_val_batch(cfg)
    module = instantiate(cfg.model)
    module.setup("validate")
    batch["video"] = torch.zeros(2, 3, 5, 32, 32)  # 5 frames -> 2 latent frames, not the cached 3
    with pytest.raises(WantrainError, match="re-run `python -m wantrain encode`"):
        module.clean(batch)


def test_latent_arrays_are_checked_when_read_and_batched():
    from wantrain.data.collate import collate_samples
    from wantrain.data.samples import SampleDecoder
    from wantrain.data.skips import SkipError

    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 8), np.float16), allow_pickle=False)  # tokens, not (C, T', h, w) latents
    with pytest.raises(SkipError, match=r"latent.npy has shape \(4, 8\).*want \(C, T', h, w\)"):
        SampleDecoder._embedding("latent", buf.getvalue())
    sample = {"video": torch.zeros(3, 5, 16, 16), "image": torch.zeros(3, 16, 16), "caption": "c", "key": "k"}
    a, b = {**sample, "latent": torch.zeros(4, 2, 2, 2)}, {**sample, "latent": torch.zeros(4, 3, 2, 2)}
    assert collate_samples([a, a], ("latent",))["latent"].shape == (2, 4, 2, 2, 2)  # stacked, no mask
    with pytest.raises(ValueError, match="different shapes.*re-encode"):
        collate_samples([a, b], ("latent",))


def test_latents_true_without_a_vae_fails_in_one_line(compose, tmp_path):
    cfg = compose("out=x", "latents=true", config_name="encode", root=tmp_path)  # i2v_tiny: pixel space, no VAE
    assert not encode.wants_latents(compose("out=x", config_name="encode", root=tmp_path))  # auto: off in pixels
    with pytest.raises(WantrainError, match=r"latents=true needs a VAE: set model.vae"):
        encode.wants_latents(cfg)


def test_encode_reads_a_list_of_target_fps_as_validation_does():
    """data.fps: [6, 8, 12] (i2v_64) from config: encode's clips take the first rate, as validation batches do."""
    from omegaconf import OmegaConf

    from wantrain.commands.encode import validation_frames

    decoder = validation_frames(OmegaConf.create({"num_frames": 8, "resolution": 32, "fps": [6, 8, 12]})).__self__
    assert decoder.target_fps(None) == 6.0
