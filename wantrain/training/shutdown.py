"""GracefulShutdown: on SIGTERM / SIGUSR1 save `last.ckpt` at the next batch end and stop cleanly (exit code 0).

Lightning 2.6's own SIGTERM handling only raises `SIGTERMException` at the next batch end, without saving, and
broadcasts from inside the signal handler under DDP. This callback replaces Lightning's handlers for the duration of
training (they are installed just before `on_train_start` and restored by Lightning's teardown): the handler only
sets a flag; at each batch end the flag is reduced over ranks (any rank signalled => all stop at the same step), the
last checkpoint is written through the Trainer (atomic checkpoint I/O) and `trainer.should_stop` ends the fit.
On SLURM, a requeue signal (SIGUSR1, sent before the time limit by `--signal=SIGUSR1@90`) also runs
`scontrol requeue` once the checkpoint is written, so the checkpoint sits at a batch boundary and resumes exactly.
This callback is the one owner of requeueing: `build_trainer` turns Lightning's SLURM auto-requeue off (its handler
saves from inside the signal handler, possibly mid-step). If a user turns it back on, SIGUSR1 is left to Lightning.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint

from wantrain.training.lightning_private import cluster_environment, last_saved_step, save_last_checkpoint


def slurm_owns_requeue(trainer: pl.Trainer) -> bool:
    """True when Lightning's SLURMEnvironment handles the requeue signal (SIGUSR1) itself."""
    env = cluster_environment(trainer)
    return isinstance(env, SLURMEnvironment) and bool(env.auto_requeue)


def _signal_numbers(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    return tuple(getattr(signal, name) if isinstance(name, str) else signal.Signals(name) for name in names)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes for this job (`ARRAYID_TASK` in a job array), None outside a SLURM batch job."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") if SLURMEnvironment.detect() else None


def requeue_slurm_job(job_id: str) -> str:
    """Run `scontrol requeue JOB`; a short result for the log line."""
    try:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"requeue of job {job_id} failed: {err}"
    if result.returncode != 0:
        return f"requeue of job {job_id} failed: {result.stderr.strip() or result.returncode}"
    return f"requeued job {job_id}"


class GracefulShutdown(pl.Callback):
    """Turns `signals` into a checkpoint + clean stop at the next training batch end, on every rank at once."""

    def __init__(self, signals: tuple[str, ...] | list[str] = ("SIGTERM", "SIGUSR1"),
                 requeue_signals: tuple[str, ...] | list[str] = ("SIGUSR1",), dirpath: str | None = None) -> None:
        self.signals = _signal_numbers(signals)
        self.requeue_signals = _signal_numbers(requeue_signals)
        self.dirpath = dirpath
        self.received: int | None = None  # signal number, set by the handler
        self.stopped_at: int | None = None  # global step of the shutdown checkpoint
        self.saved: list[str] = []

    # --- signals ------------------------------------------------------------------------------------

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:  # only a flag: printing or saving inside a handler can re-enter I/O
            self.received = signum

    def handled_signals(self, trainer: pl.Trainer) -> list[int]:
        """The signals this callback takes over on this trainer (SIGUSR1 stays Lightning's under SLURM requeue)."""
        owned = list(self.signals)
        if slurm_owns_requeue(trainer):
            env = cluster_environment(trainer)
            requeue = getattr(env, "requeue_signal", None) or signal.SIGUSR1
            owned = [s for s in owned if s != requeue]
        return owned

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install the handlers (after Lightning registered its own, which its teardown restores)."""
        self.received, self.stopped_at, self.saved = None, None, []
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.handled_signals(trainer):
            signal.signal(signum, self._handler)
        job = slurm_job_id()
        if job and trainer.is_global_zero and not slurm_owns_requeue(trainer):
            names = "/".join(signal.Signals(s).name for s in self.requeue_signals)
            print(f"wantrain: SLURM job {job}: {names} saves last.ckpt at the next batch end and requeues the job",
                  file=sys.stderr, flush=True)

    # --- stop ---------------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """If any rank was signalled: save the last checkpoint and stop (all ranks decide together)."""
        stop = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
        if not stop or self.stopped_at is not None:
            return
        requeue = trainer.strategy.reduce_boolean_decision(self.received in self.requeue_signals, all=False)
        self.stopped_at = trainer.global_step
        self.saved = self._save(trainer)
        trainer.should_stop = True
        if trainer.is_global_zero:
            name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
            where = ", ".join(self.saved) or "nowhere (checkpointing is off)"
            job = slurm_job_id()
            requeue = bool(requeue and job and not slurm_owns_requeue(trainer))
            then = f"requeueing job {job}" if requeue else "resume with ckpt_path=auto (the default)"
            print(f"wantrain: stopped on {name} at step {trainer.global_step}; saved {where}; {then}",
                  file=sys.stderr, flush=True)
            if requeue:  # last: SLURM starts killing this job's tasks as soon as it is requeued
                print(f"wantrain: {requeue_slurm_job(job)}", file=sys.stderr, flush=True)

    def _save(self, trainer: pl.Trainer) -> list[str]:
        """Write `last.ckpt` through the checkpoint callbacks (keeps their bookkeeping), else into `dirpath`."""
        saved = []
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
                if last_saved_step(callback) == trainer.global_step and callback.last_model_path:
                    saved.append(callback.last_model_path)  # already written at this step
                    continue
                save_last_checkpoint(callback, trainer)
                saved.append(callback.last_model_path)
        if not saved and not trainer.fast_dev_run:
            folder = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "checkpoints"
            path = str(folder / "last.ckpt")
            trainer.save_checkpoint(path)
            saved.append(path)
        return saved
