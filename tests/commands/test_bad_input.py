"""Bad input through the CLI: each fails with one line that names the problem and the fix (exit code 1, or 2 for
bad overrides). Most cases call the CLI's own `main()` in this process (same argv parsing, Hydra run and error
printing as `python -m wantrain`, without paying the imports again); one case runs it as a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from wantrain.__main__ import main
from wantrain.commands.preflight import check_validation_split
from wantrain.data.synthetic import synthetic_sample
from wantrain.errors import WantrainError
from wantrain.io.tar import write_shard
from wantrain.training.datamodule import VideoShardDataModule


def base(data_dir: Path, run: str, diffusion: bool = True) -> list[str]:
    common = [f"paths.data_dir={data_dir}", f"run_name={run}", "trainer.max_steps=1", "data.num_workers=0",
              "data.batch_size=2", "data.samples_per_epoch=4", "trainer.limit_val_batches=0", "logger=csv",
              "print_config=false", "callbacks.model_checkpoint.every_n_train_steps=1"]
    return [*common, "model.sampling.every_n_steps=0"] if diffusion else common


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    """Run `python -m wantrain ARGS` in-process from tmp_path: returns (exit code, last stderr line)."""
    monkeypatch.chdir(tmp_path)
    for key in ("WANTRAIN_RUN_STAMP", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err.strip().splitlines()
        return code, (err[-1] if err else "")
    return run


def one_line(code: int, line: str, expected_code: int, *fragments: str) -> None:
    assert code == expected_code, line
    assert line.startswith("wantrain: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_missing_shards_and_empty_globs(cli, data_dir, tmp_path):
    one_line(*cli("fit", *base(data_dir, "m"), "data=shards", f"data.train_shards='{tmp_path}/nope-{{0..3}}.tar'"),
             1, f"data.train_shards: shard {tmp_path}/nope-0.tar does not exist (and 3 more)",
             "fix the data.*_shards path")
    (tmp_path / "empty").mkdir()
    one_line(*cli("fit", *base(data_dir, "g"), "data=shards", f"data.train_shards='{tmp_path}/empty/*.tar'"), 1,
             "matches no shards; check the path or pattern")


def test_unknown_config_keys(cli, data_dir, wantrain_cli, tmp_path):
    one_line(*cli("fit", *base(data_dir, "k"), "data.batchsize=4"), 2,
             "Could not override 'data.batchsize'", "Key 'batchsize' is not in struct")
    one_line(*cli("fit", *base(data_dir, "k"), "+model.unet.chanels=8"), 1,
             "unknown config key model.unet.chanels: remove it or fix its spelling")
    process = wantrain_cli(["fit", *base(data_dir, "k"), "+data.foo=1"], cwd=tmp_path)  # a real process too
    one_line(process.returncode, process.stderr.strip().splitlines()[-1], 1, "unknown config key data.foo")


def test_resolution_not_divisible_by_the_unet_downsampling(cli, data_dir):
    one_line(*cli("fit", *base(data_dir, "r"), "data.resolution=30", "model.unet.channel_mult=[1,2,2]"), 1,
             "data.resolution=30 is not divisible by the downsampling factor 4",
             "set data.resolution to a multiple of 4 (e.g. 28)")


def test_num_frames_longer_than_every_clip(cli, data_dir):
    # the synthetic clips have 32 frames; loader workers re-raise the error with their traceback: still one line
    one_line(*cli("fit", *base(data_dir, "f"), "data.num_frames=40", "data.num_workers=1"), 1,
             "samples in a row were skipped without one usable (too_short=", "lower data.num_frames")


def test_validation_set_smaller_than_the_ranks(tmp_path):
    shard = tmp_path / "val-0.tar"
    write_shard(shard, [{"__key__": "0", **synthetic_sample(0, 0, 4, 32, 8, 4)}])
    dm = VideoShardDataModule(train_shards=str(shard), val_shards=str(shard), batch_size=8, num_frames=4,
                              resolution=32, num_workers=0)
    check_validation_split(dm, world_size=1)  # one sample, batch 8, one rank: fine (a partial batch)
    with pytest.raises(WantrainError, match=r"data.val_shards hold 1 sample\(s\) for 2 ranks: .* use fewer devices"):
        check_validation_split(dm, world_size=2)
    dm.setup("validate")
    (batch,) = list(dm.val_dataloader())  # batch size > data: one partial batch, nothing dropped
    assert len(batch["key"]) == 1


def test_encoder_paths_without_weights(cli, data_dir, tmp_path):
    text = tmp_path / "t5-no-weights"
    shutil.copytree(data_dir / "encoders" / "tiny-t5", text)
    (text / "model.safetensors").unlink()
    one_line(*cli("fit", *base(data_dir, "e"), "model.build_tiny_encoders=false", f"model.text_encoder.path={text}"),
             1, f"{text} has config.json but no weights", "hf download")
    one_line(*cli("fit", *base(data_dir, "e2"), "model.build_tiny_encoders=false",
                  f"model.image_encoder.path={tmp_path}/nothing"), 1, f"{tmp_path}/nothing")


@pytest.fixture
def checkpoints(cli, data_dir, tmp_path):
    """A 1-step checkpoint of the diffusion stage and of the upsampler stage (tiny)."""
    assert cli("fit", *base(data_dir, "diff"))[0] == 0
    sr = ["+experiment=sr_tiny", *base(data_dir, "sr", diffusion=False), "data.num_frames=2", "data.resolution=32",
          "model.crop_size=16",
          "model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8"]
    assert cli("fit", *sr)[0] == 0
    return {name: tmp_path / "runs" / name / "checkpoints" / "last.ckpt" for name in ("diff", "sr")}


def test_checkpoint_of_another_stage_or_architecture(cli, data_dir, checkpoints, tmp_path):
    one_line(*cli("fit", *base(data_dir, "x"), f"ckpt_path={checkpoints['sr']}", "trainer.max_steps=3"), 1,
             "was trained by UpsamplerModule (an upsampler stage", "but this run builds VideoDiffusionModule",
             "pick the matching +experiment")
    one_line(*cli("validate", *base(data_dir, "x"), f"ckpt_path={checkpoints['sr']}"), 1,
             "was trained by UpsamplerModule")
    one_line(*cli("fit", *base(data_dir, "y"), f"ckpt_path={checkpoints['diff']}", "trainer.max_steps=3",
                  "model.unet.model_channels=16"), 1,
             "does not fit this model: model.unet.", "in the checkpoint but",
             "use the model settings it was trained with")
    evil = tmp_path / "evil.ckpt"
    state = torch.load(checkpoints["diff"], weights_only=True)
    state["payload"] = Path("x")  # any non-tensor object: torch.save pickles it as a class instance
    torch.save(state, evil)
    one_line(*cli("fit", *base(data_dir, "z"), f"ckpt_path={evil}", "trainer.max_steps=3"), 1,
             f"checkpoint {evil} holds pickled objects", "weights_only")
