"""The schema of the main config's own keys (conf/config.yaml) and of the Trainer arguments wantrain bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wantrain.schema import option


def _strategies() -> list[str]:
    from pytorch_lightning.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def _accelerators() -> list[str]:
    from pytorch_lightning.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def _precisions() -> list[int | str]:
    from wantrain.training.lightning_private import precision_choices

    return precision_choices()


@dataclass
class RunOptions:
    """The main config's top level (`fit`, `validate`): the run, its checkpoints and its starting weights."""

    run_name: str = option("${oc.env:SLURM_JOB_ID,${wantrain_run_stamp:}}", "the run's name, stable across DDP "
                           "ranks and SLURM requeues (SLURM: the job id; else a stamp fixed at launch)")
    run_dir: str = option("${paths.runs_dir}/${run_name}", "the run folder: checkpoints, logs, samples")
    seed: int = option(0, "global seed (ranks and loader workers derive theirs)", ge=0)
    ckpt_path: str | None = option("auto", "auto: resume the newest checkpoint in run_dir (fresh start when there is "
                                           "none); a path; or null")
    init_from: str | None = option(None, "start from weights only (fresh optimizer, step 0): a .ckpt, a run folder, an "
                                         "export or .safetensors; ckpt_path=auto still wins when run_dir has a "
                                         "checkpoint (a requeued fine-tune resumes)")
    init_weights: str = option("ema", "which weights of a .ckpt to start from", choices=("ema", "raw"))
    init_strict: bool = option(False, "fail on any missing, unexpected or shape-mismatched tensor")
    init_fresh: list[str] = option(doc="module-name patterns kept at their fresh init, e.g. [temporal] (image -> "
                                       "video inflation)",
                                   factory=list)
    init_lora: list[str] = option(doc="LoRA files merged into the starting weights of a Wan backbone, after init_from "
                                      "(diffusers, ComfyUI / original Wan, musubi-tuner or DiffSynth-Studio keys)",
                                  factory=list)
    init_required: bool = option(False, "refuse to start without init_from (the fine-tuning experiments set it)")
    print_config: bool = option(True, "print the resolved config at start (rank 0)")
    paths: Any = option(None, "root_dir, data_dir, runs_dir, weights_dir (conf/paths/)")
    data: Any = option(None, "the data module (conf/data/)")
    model: Any = option(None, "the LightningModule (conf/model/)")
    trainer: Any = option(None, "pytorch_lightning.Trainer arguments (conf/trainer/)")
    logger: Any = option(None, "loggers by name (conf/logger/)")
    callbacks: Any = option(None, "callbacks by name (conf/callbacks/)")
    debug: Any = option(None, "debug presets (conf/debug/)")
    experiment: Any = option(None, "set by +experiment=NAME")


@dataclass
class TrainerOptions:
    """`trainer.*`: the pytorch_lightning.Trainer arguments wantrain bounds (any other Trainer argument is passed
    through; its name is checked against Trainer's signature)."""

    accelerator: str = option("auto", "the device kind", choices=_accelerators)
    devices: int | str | list[int] = option(1, "devices per node: a count, 'auto', -1 (all) or a list of ids", ge=-1)
    num_nodes: int = option(1, "nodes", ge=1)
    precision: int | str = option("32-true", "numeric precision", choices=_precisions)
    strategy: str | dict[str, Any] = option("auto", "a registered strategy name or a {_target_: ...} node",
                                            choices=_strategies)
    max_steps: int = option(-1, "optimizer steps to train (-1: no limit)", ge=-1)
    max_epochs: int | None = option(None, "epochs to train (-1: no limit)", ge=-1)
    accumulate_grad_batches: int = option(1, "batches per optimizer step", ge=1)
    gradient_clip_val: float | None = option(None, "clip gradients to this norm (null: off)", ge=0)
    log_every_n_steps: int = option(50, "log scalars every N steps", ge=1)
    val_check_interval: int | float | None = option(None, "validate every N batches (int) or share of an epoch",
                                                    gt=0)
    check_val_every_n_epoch: int | None = option(1, "validate every N epochs", ge=1)
    limit_val_batches: int | float | None = option(1.0, "validation batches per run: a count or a share", ge=0)
    num_sanity_val_steps: int = option(0, "validation batches before training (-1: all)", ge=-1)
