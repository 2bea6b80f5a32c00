"""The behaviour both LightningModules share, checked on both: NaN/inf guards and their checkpoint entry, the EMA's
start rules, the callbacks they add (sample videos, export at train end) and the preflight protocol."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.cascade import SRStage
from wantrain.inference.checkpoints import read_saved
from wantrain.training.callbacks import ExportAtTrainEnd
from wantrain.training.datamodule import VideoShardDataModule
from wantrain.training.ema import TrainableEMA
from wantrain.training.nonfinite import NonFiniteError
from wantrain.training.preflight import Preflight
from wantrain.training.sample_videos import SampleVideo, SampleVideos

DATA = ["data.num_workers=0", "data.batch_size=2", "data.val_batch_size=2", "data.samples_per_epoch=4"]
TINY = {  # CPU-sized versions of both stages
    "diffusion": ["data.num_frames=4", "data.resolution=16", "model.unet.model_channels=16"],
    "upsampler": ["+experiment=sr_tiny", "data.num_frames=2", "data.resolution=32", "model.crop_size=16",
                  "model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8"],
}
# what each stage's checkpoints hold under "nonfinite_steps", and the metrics its guards log
SAVED_GUARDS = {
    "diffusion": {"total": 2, "consecutive": 1},
    "upsampler": {"g": {"total": 2, "consecutive": 1}, "d": {"total": 1, "consecutive": 1}},
}
METRICS = {"diffusion": {"train/nonfinite_steps": 2.0},
           "upsampler": {"train/nonfinite_steps": 2.0, "train/nonfinite_d_steps": 1.0}}
GUARDED_NETS = {"diffusion": {"": "model"}, "upsampler": {"g": "generator", "d": "discriminator"}}


@pytest.fixture(params=["diffusion", "upsampler"])
def stage(request, compose, data_dir, tmp_path):
    """(kind, config, build): a tiny config of each stage and a function that builds its module (with overrides)."""
    kind = request.param

    def build(*overrides: str) -> tuple[pl.LightningModule, object]:
        cfg = compose(*TINY[kind], f"paths.data_dir={data_dir}", *DATA, *overrides, root=tmp_path)
        return instantiate(cfg.model), cfg

    return kind, build


def nan_step(module: pl.LightningModule, name: str, net: str) -> bool:
    """Give the guarded network NaN gradients and run its guard, as the optimisation step does."""
    params = [p for p in getattr(module, net).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    finite = module.guard_gradients(params, name)
    assert all(p.grad is None for p in params)  # dropped: the optimizer step leaves the weights alone
    return finite


def test_guards_skip_count_and_round_trip_through_a_checkpoint(stage, tmp_path):
    kind, build = stage
    module, _ = build("model.max_nonfinite_steps=3")
    nets = GUARDED_NETS[kind]
    first, *rest = nets.items()
    assert not nan_step(module, *first)
    params = [p for p in getattr(module, first[1]).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    assert module.guard_gradients(params, first[0])  # finite: the run of bad steps starts again
    assert not nan_step(module, *first)
    for name, net in rest:
        assert not nan_step(module, name, net)
    assert module.nonfinite.totals() == METRICS[kind]

    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["nonfinite_steps"] == SAVED_GUARDS[kind]  # the key and layout older checkpoints have
    torch.save(checkpoint, tmp_path / "guards.ckpt")
    resumed, _ = build("model.max_nonfinite_steps=3")
    resumed.on_load_checkpoint(torch.load(tmp_path / "guards.ckpt", weights_only=True))
    assert resumed.nonfinite.state_dict() == SAVED_GUARDS[kind]
    assert not nan_step(resumed, *first)
    with pytest.raises(NonFiniteError, match="3 optimizer steps in a row"):  # the consecutive count carried over
        nan_step(resumed, *first)

    before_guards, _ = build()
    before_guards.on_load_checkpoint({"global_step": 4})  # a checkpoint from before the guard: counters start at 0
    assert set(before_guards.nonfinite.totals().values()) == {0.0}


def test_ema_follows_from_its_start_holding_or_copying_before_it():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    hold, copy = TrainableEMA(net, 0.5), TrainableEMA(net, 0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    hold.follow(net, step=1, start=2, copy_before_start=False)  # the diffusion stage's model.ema_start_step
    copy.follow(net, step=1, start=2, copy_before_start=True)  # the upsampler's model.ema_start
    assert torch.equal(hold.module.weight, start["weight"]) and int(hold.n_averaged) == 0
    assert torch.equal(copy.module.weight, net.weight)
    at_one = net.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    hold.follow(net, step=2, start=2, copy_before_start=False)  # first EMA step after holding: a copy
    copy.follow(net, step=2, start=2, copy_before_start=True)  # an EMA step from the copy
    assert torch.equal(hold.module.weight, net.weight)
    torch.testing.assert_close(copy.module.weight, 0.5 * at_one + 0.5 * net.weight)


def test_both_modules_add_sample_videos_from_their_own_config(stage):
    kind, build = stage
    every = "model.sampling.every_n_steps=7" if kind == "diffusion" else "model.validation.every_n_steps=7"
    fps = "model.sampling.video.fps=5" if kind == "diffusion" else "model.validation.video.fps=5"
    module, _ = build(every, fps, *(["model.export_dir=null"] if kind == "upsampler" else []))
    callbacks = module.configure_callbacks()
    assert [type(c) for c in callbacks] == [SampleVideos]
    assert (callbacks[0].every_n_steps, callbacks[0].fps) == (7, 5)


class KeptExamples(pl.LightningModule):
    """A module that kept validation examples and makes a 2-frame video of them, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.val_examples: dict | None = None
        self.calls = 0

    def sample_video(self, examples: dict) -> SampleVideo:
        self.calls += 1
        return SampleVideo(f"v{self.calls}", torch.zeros(2, 8, 8, 3, dtype=torch.uint8), {"n": self.calls}, "c")


def test_sample_videos_are_written_every_n_steps_on_rank_zero_only(tmp_path):
    callback, module = SampleVideos(every_n_steps=2, fps=4, folder="clips"), KeptExamples()
    trainer = SimpleNamespace(sanity_checking=False, fast_dev_run=False, global_step=0, is_global_zero=True,
                              default_root_dir=str(tmp_path), loggers=[])
    written = []
    for step, flags in [(0, {"sanity_checking": True}), (0, {}), (1, {}), (2, {"is_global_zero": False}), (3, {}),
                        (4, {"fast_dev_run": True}), (4, {})]:
        run = SimpleNamespace(**{**vars(trainer), "global_step": step, **flags})
        module.val_examples = {"video": "kept"}
        callback.on_validation_epoch_end(run, module)
        assert module.val_examples is None  # kept for one validation only
        written.append(sorted(p.name for p in (tmp_path / "clips").glob("*.mp4")) if (tmp_path / "clips").exists()
                       else [])
    # step 0 (not the sanity check), step 2 (made on every rank, written by rank 0 only: rank 1 writes nothing),
    # step 4 (not fast_dev_run)
    assert module.calls == 3
    assert written[-1] == ["v1.mp4", "v3.mp4"] and written[1] == ["v1.mp4"] and written[3] == ["v1.mp4"]
    assert json.loads((tmp_path / "clips" / "v3.json").read_text()) == {"n": 3}


def test_the_upsampler_exports_its_ema_generator_at_train_end(compose, data_dir, tmp_path):
    cfg = compose(*TINY["upsampler"], f"paths.data_dir={data_dir}", *DATA, "model.base_size=16", root=tmp_path)
    module = instantiate(cfg.model)
    export, = [c for c in module.configure_callbacks() if isinstance(c, ExportAtTrainEnd)]
    assert export.folder == Path(module.hparams.export_dir) / "sr_stage1" and export.folder.is_relative_to(tmp_path)
    trainer = SimpleNamespace(is_global_zero=False, sanity_checking=False)
    export.on_train_end(trainer, module)
    assert not export.folder.exists()  # rank 0 only
    export.on_train_end(SimpleNamespace(is_global_zero=True, sanity_checking=False), module)
    stage = SRStage.from_saved(read_saved(export.folder))  # strict: the EMA generator's state dict
    lr = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(stage(lr), module.upsample(lr, use_ema=True))


BAD_RESOLUTION = {"diffusion": ["data.resolution=30", "model.unet.channel_mult=[1,2,2]"],
                  "upsampler": ["data.resolution=48", "model.base_size=16"]}
MESSAGES = {"diffusion": r"^data.resolution=30 is not divisible by the downsampling factor 4",
            "upsampler": r"^sr_stage1 maps 16 -> 32 px but data.resolution=48: set data.resolution=32$"}


def test_the_preflight_protocol_gives_one_line_errors_from_the_cli_or_from_setup(stage):
    kind, build = stage
    module, cfg = build(*BAD_RESOLUTION[kind])
    datamodule = instantiate(cfg.data)
    assert isinstance(module, Preflight) and isinstance(datamodule, Preflight)
    with pytest.raises(WantrainError, match=MESSAGES[kind]) as err:
        module.preflight(datamodule, None)  # as prepare_run calls it
    assert "\n" not in str(err.value)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(WantrainError, match=MESSAGES[kind]):  # a fit from Python, without the CLI: from setup()
        trainer.fit(module, datamodule=datamodule)


def test_setup_does_not_repeat_a_preflight_that_passed(stage, monkeypatch):
    kind, build = stage
    module, cfg = build()
    datamodule, other = instantiate(cfg.data), instantiate(cfg.data)
    runs = []
    check = type(module).check_run
    monkeypatch.setattr(type(module), "check_run", lambda self, *args: (runs.append(args), check(self, *args)))
    module.preflight(datamodule, None)
    module.preflight_unless_done(datamodule, None)  # what setup() calls after prepare_run
    assert len(runs) == 1
    module.preflight_unless_done(other, None)  # another data module: checked again
    assert len(runs) == 2


def test_the_data_module_preflight_checks_its_shards(tmp_path):
    datamodule = VideoShardDataModule(train_shards=str(tmp_path / "missing-{0..1}.tar"))
    with pytest.raises(FileNotFoundError, match="data.train_shards: .*missing-0.tar does not exist"):
        datamodule.preflight()
