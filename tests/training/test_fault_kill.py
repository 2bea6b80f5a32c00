"""Killing `python -m wantrain fit` (kill -9 at random moments and in the middle of checkpoint writes; SIGTERM and
SIGUSR1 mid-step), then `ckpt_path=auto`: no checkpoint is lost or partial, and the run ends at max_steps."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

MAX_STEPS = {"diffusion": 16, "upsampler": 60}


def common(data_dir: Path, stage: str) -> list[str]:
    """A tiny fit that writes last.ckpt + stepN.ckpt after every step and prints `step N/MAX` lines."""
    args = [f"paths.data_dir={data_dir}", "run_name=k", "data.samples_per_epoch=8", "data.batch_size=2",
            "data.num_workers=0", "trainer.limit_val_batches=0", "logger=csv", "print_config=false",
            "callbacks.model_checkpoint.every_n_train_steps=1", "callbacks.progress.every_n_steps=1",
            f"trainer.max_steps={MAX_STEPS[stage]}"]
    if stage == "diffusion":  # the default fit (i2v_tiny): 20 MB checkpoints
        return [*args, "model.sampling.every_n_steps=0"]
    # the upsampler stage without the VGG term: ~14 steps/s, 6 MB checkpoints, starts in half the time
    return ["+experiment=sr_tiny", *args, "data.num_frames=2", "data.resolution=32", "model.crop_size=16",
            "model.generator.channels=64", "model.generator.num_blocks=2", "model.discriminator.channels=8",
            "model.content_loss.vgg_weight=0"]


def launch(cwd: Path, args: list[str], log: Path) -> subprocess.Popen:
    """Start `python -m wantrain ARGS` with stdout+stderr in `log` (so the test can watch it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANTRAIN_", "SLURM_"))}
    env.update({"PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"})
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "wantrain", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_for(proc: subprocess.Popen, condition, timeout: float = 300, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (code {proc.returncode}) before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill the run"
        time.sleep(poll)


def steps(ckpt_dir: Path) -> dict[str, int]:
    """Every `*.ckpt` in the folder loads with weights_only=True (else this raises): name -> global_step."""
    return {p.name: torch.load(p, map_location="cpu", weights_only=True, mmap=True)["global_step"]
            for p in sorted(ckpt_dir.glob("*.ckpt"))}


def temp_files(ckpt_dir: Path) -> list[Path]:
    return list(ckpt_dir.glob("*.tmp-*")) if ckpt_dir.is_dir() else []


def newest(ckpt_dir: Path) -> Path:
    return max(ckpt_dir.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns, p.name))


def progressed(log: Path, beyond: int):
    """True once the run's log shows a finished step > `beyond` (plain progress lines: `step N/MAX`)."""
    def check() -> bool:
        return any(int(n) > beyond for n in re.findall(r"^step (\d+)/", log.read_text(), re.M))
    return check


@pytest.mark.slow
def test_kill_9_at_random_moments_and_mid_save_never_loses_a_checkpoint(data_dir, tmp_path):
    ckpt_dir = tmp_path / "runs" / "k" / "checkpoints"
    rng = random.Random(int(os.environ.get("WANTRAIN_FAULT_SEED", "0")))
    best, killed_mid_write = -1, 0
    for round_ in range(4):  # two kills mid-write (one early, one late in the file), two at random moments
        log = tmp_path / f"kill{round_}.log"
        resume_from = newest(ckpt_dir) if ckpt_dir.is_dir() and list(ckpt_dir.glob("*.ckpt")) else None
        proc = launch(tmp_path, ["fit", *common(data_dir, "upsampler")], log)
        if round_ % 2 == 0:  # while a checkpoint is being written (its NAME.ckpt.tmp-PID exists), early or later
            min_bytes = 0 if round_ != 2 else 3 << 20
            wait_for(proc, lambda pid=proc.pid, min_bytes=min_bytes: any(
                p.name.endswith(f".tmp-{pid}") and p.stat().st_size >= min_bytes for p in temp_files(ckpt_dir)))
        else:  # at a random moment once training is under way (mid-step, mid-save or between)
            wait_for(proc, progressed(log, max(best, 0)))
            time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_write += any(p.name.endswith(f".tmp-{proc.pid}") for p in temp_files(ckpt_dir))
        found = steps(ckpt_dir) if ckpt_dir.is_dir() else {}  # every remaining checkpoint is complete, loadable
        assert max(found.values(), default=-1) >= best, (round_, found, best)  # nothing newer was lost
        best = max(found.values(), default=-1)
        if resume_from is not None:  # the launch resumed from the newest complete checkpoint of its time
            assert f"Restoring states from the checkpoint path at {resume_from}" in log.read_text(), round_
        assert best < MAX_STEPS["upsampler"]
    assert killed_mid_write >= 2  # the mid-write kills really left partial files behind ...
    final_log = tmp_path / "final.log"
    resume_from = newest(ckpt_dir)
    final = launch(tmp_path, ["fit", *common(data_dir, "upsampler")], final_log)
    assert final.wait(timeout=600) == 0, final_log.read_text()[-3000:]
    assert f"Restoring states from the checkpoint path at {resume_from}" in final_log.read_text()
    found = steps(ckpt_dir)
    assert found["last.ckpt"] == MAX_STEPS["upsampler"] == max(found.values())
    assert not temp_files(ckpt_dir)  # ... which the next writer removed (they were never picked for resuming)


@pytest.mark.slow
def test_sigterm_and_sigusr1_save_last_checkpoint_and_exit_cleanly(data_dir, tmp_path):
    ckpt_dir = tmp_path / "runs" / "k" / "checkpoints"
    stopped = -1
    for n, signum in enumerate((signal.SIGTERM, signal.SIGUSR1)):
        log = tmp_path / f"{signum.name}.log"
        proc = launch(tmp_path, ["fit", *common(data_dir, "upsampler")], log)
        wait_for(proc, progressed(log, max(stopped, 1)), poll=0.01)  # training is under way: mid-step now
        proc.send_signal(signum)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
        text = log.read_text()
        match = re.search(rf"wantrain: stopped on {signum.name} at step (\d+); saved (\S+)last\.ckpt", text)
        assert match, text[-3000:]
        step = int(match.group(1))
        assert step > stopped and steps(ckpt_dir)["last.ckpt"] == step < MAX_STEPS["upsampler"]
        if n:  # the second launch continued from the checkpoint the first one saved on SIGTERM
            assert f"Restoring states from the checkpoint path at {ckpt_dir / 'last.ckpt'}" in text
        stopped = step
    assert not temp_files(ckpt_dir)


@pytest.mark.ddp
@pytest.mark.slow
def test_sigterm_to_rank_0_stops_both_ddp_ranks_at_one_step(data_dir, tmp_path):
    ckpt_dir = tmp_path / "runs" / "k" / "checkpoints"
    log = tmp_path / "ddp.log"
    args = [*common(data_dir, "upsampler"), "trainer=ddp_cpu", "trainer.strategy=ddp_find_unused_parameters_true"]
    proc = launch(tmp_path, ["fit", *args], log)
    wait_for(proc, progressed(log, 2), poll=0.01)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "rank 1 was not started as a child process"
    proc.send_signal(signal.SIGTERM)  # only rank 0 is signalled; the flag is reduced over ranks at batch end
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    match = re.search(r"wantrain: stopped on SIGTERM at step (\d+)", log.read_text())
    assert match and steps(ckpt_dir)["last.ckpt"] == int(match.group(1)) < MAX_STEPS["upsampler"]
    def gone(pid: str) -> bool:
        status = Path(f"/proc/{pid}/status")
        try:
            return "zombie" in status.read_text()
        except FileNotFoundError:
            return True

    # rank 1 stopped at the same step and exited (an orphan waiting in a collective would hang until the collective
    # timeout); on 2 loaded cores its interpreter may take a few seconds longer than rank 0's to exit
    deadline = time.monotonic() + 60
    while not all(gone(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(gone(pid) for pid in children), children
