"""A wrong launch fails in the preflight, in one line and in seconds, and leaves nothing behind: no run folder,
no Hydra record, no logger files, no wandb run, no generated data or tiny encoders (wandb is offline here, so a
started run would leave `wandb/` files)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from wantrain.__main__ import main

TINY = ["trainer.max_steps=1", "data.num_workers=0", "data.batch_size=2", "data.samples_per_epoch=4",
        "print_config=false"]


@pytest.fixture
def launch(tmp_path, capsys, monkeypatch):
    """`python -m wantrain ARGS` in-process from an empty tmp_path: (exit code, last stderr line, seconds)."""
    monkeypatch.chdir(tmp_path)
    for key in ("WANTRAIN_RUN_STAMP", "SLURM_JOB_ID", "WANTRAIN_ROOT", "WANTRAIN_WEIGHTS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")

    def run(*args: str) -> tuple[int, str, float]:
        capsys.readouterr()
        start = time.monotonic()
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
        seconds = time.monotonic() - start
        err = capsys.readouterr().err.strip().splitlines()
        return code, (err[-1] if err else ""), seconds
    return run


def nothing_left(folder: Path) -> None:
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert left == [], f"a failed launch left {left}"


def shard_of(data_dir: Path) -> str:
    return str(data_dir / "synthetic" / "train-00000.tar")


CASES = {
    # the full-size experiment on a machine without its T5-XXL / DiT-XL weights (the 650M-parameter UNet is
    # never built: the encoder paths are checked first)
    "missing weights": lambda d: ["+experiment=i2v_64", "trainer=default", f"data.train_shards={shard_of(d)}"],
    "missing shards": lambda d: ["data=shards", "data.train_shards='/nonexistent/train-{0..3}.tar'"],
    "bad resolution": lambda d: ["data.resolution=30", "model.unet.channel_mult=[1,2,2]"],
    "unknown key": lambda d: ["+model.unet.chanels=8"],
    "missing checkpoint": lambda d: ["ckpt_path=/nonexistent/last.ckpt"],
    "cached conditioning without embeddings": lambda d: ["model.conditioning=cached"],
    # refused by the config schema at compose time (wantrain/config_schema/), before the preflight
    "wrong type": lambda d: ["model.optimizer.lr=abc"],
    "out of range": lambda d: ["model.sampling.guidance_rescale=1.5"],
    "batch 0": lambda d: ["data.batch_size=0"],
    "negative workers": lambda d: ["data.num_workers=-1"],
    "negative max_steps": lambda d: ["trainer.max_steps=-3"],
    "bad precision": lambda d: ["trainer.precision=bf17"],
    "bad strategy": lambda d: ["trainer.strategy=dpp"],
    "unknown experiment": lambda d: ["+experiment=i2v_huge"],
}
MESSAGES = {
    "missing weights": "is neither a local directory nor a hub id",
    "missing shards": "data.train_shards: shard /nonexistent/train-0.tar does not exist",
    "bad resolution": "data.resolution=30 is not divisible",
    "unknown key": "unknown config key model.unet.chanels",
    "missing checkpoint": "checkpoint /nonexistent/last.ckpt does not exist",
    "cached conditioning without embeddings": "model.conditioning=cached needs data.embeddings",
    "wrong type": "model.optimizer.lr='abc': expected a number",
    "out of range": "model.sampling.guidance_rescale=1.5: out of range, use a value >= 0 and <= 1",
    "batch 0": "data.batch_size=0: out of range, use a value >= 1",
    "negative workers": "data.num_workers=-1: out of range, use a value >= 0",
    "negative max_steps": "trainer.max_steps=-3: out of range, use a value >= -1",
    "bad precision": "trainer.precision='bf17': not allowed (did you mean bf16?)",
    "bad strategy": "trainer.strategy='dpp': not allowed (did you mean ddp?)",
    "unknown experiment": "unknown experiment 'i2v_huge'",
}
USAGE = {"unknown experiment"}  # refused from the command line alone: exit 2 (the others: exit 1)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_launch_leaves_nothing_behind(launch, data_dir, tmp_path, case):
    # the default data is the synthetic set under ./data, generated when missing: a launch that got past the
    # preflight would write it (and the tiny encoders) into this empty folder
    code, line, seconds = launch("fit", *TINY, *CASES[case](data_dir))
    print(f"preflight: {case}: exit {code} after {seconds:.1f} s: {line}")
    assert code == (2 if case in USAGE else 1), line
    assert line.startswith("wantrain: error: ") and MESSAGES[case] in line, line
    nothing_left(tmp_path)
    assert seconds < 60  # a sanity bound only; the figure is printed above (seconds, not a training start)


def test_validate_without_a_checkpoint_leaves_nothing_behind(launch, tmp_path):
    code, line, seconds = launch("validate", *TINY)
    print(f"preflight: validate without checkpoint: exit {code} after {seconds:.1f} s")
    assert code == 1 and "no checkpoint to validate" in line, line
    nothing_left(tmp_path)


@pytest.mark.slow
def test_missing_weights_as_a_user_sees_it(wantrain_cli, data_dir, tmp_path):
    """A real process (imports included), wandb in its default mode (offline without a login)."""
    start = time.monotonic()
    result = wantrain_cli(["fit", *CASES["missing weights"](data_dir)], cwd=tmp_path, env={"WANDB_MODE": None})
    seconds = time.monotonic() - start
    print(f"preflight: fit +experiment=i2v_64 without weights: exit {result.returncode} after {seconds:.1f} s")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "t5-v1_1-xxl" in lines[-1], result.stderr[-2000:]  # one line, nothing else
    assert result.stdout == ""
    nothing_left(tmp_path)
    assert seconds < 120


NOISE = ("💡", "litlogger", "anonymous setting", "LeafSpec", "IterableDataset", "Total FLOPs", "srun",
         "was configured so", "Writing model shards", "Logging error")


@pytest.mark.slow
def test_fit_prints_no_third_party_noise(wantrain_cli, data_dir, tmp_path):
    """A short default fit (wandb offline as without a login) prints wantrain's lines and Lightning's device lines,
    none of the known advertisement / deprecation / warning lines, and closes with the run folder; it leaves a
    checkpoint, config.yaml and one CSV log (the i2v_tiny case of test_fit_experiments.py)."""
    result = wantrain_cli(["fit", f"paths.data_dir={data_dir}", "run_name=q", "print_config=false",
                           "trainer.max_steps=2", "data.samples_per_epoch=4", "data.batch_size=2",
                           "trainer.limit_val_batches=1", "model.sampling.num_steps=2"],
                          cwd=tmp_path, env={"WANDB_MODE": "offline"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert [n for n in NOISE if n in output] == [], output
    assert "VideoDiffusionModule: part   trainable  not trained" in output
    assert f"run folder {tmp_path}/runs/q: checkpoints/last.ckpt" in output
    assert "wandb sync" in output
    # the bare fit is i2v_tiny: the checks of tests/commands/test_fit_experiments.py on this launch
    run_dir = tmp_path / "runs" / "q"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] >= 2
    assert checkpoint["wantrain_config"]["model"]["_target_"].startswith("wantrain.training.")
    assert (run_dir / "config.yaml").is_file() and len(list(run_dir.glob("csv/*/metrics.csv"))) == 1
