"""`python -m wantrain fit`: train the configured stage."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from wantrain.commands.failures import user_errors
from wantrain.commands.instantiate import build_trainer
from wantrain.commands.preflight import prepare_run
from wantrain.commands.run_setup import print_run_summary, start_run
from wantrain.errors import WantrainError
from wantrain.training.callbacks import RunConfigInCheckpoint
from wantrain.training.init_weights import init_weights, merge_lora_files


def start_from_weights(cfg: DictConfig, model: pl.LightningModule, ckpt_path: str | None) -> None:
    """`init_from`: load weights only (step 0, fresh optimizer) and print the report; a run that resumes a
    checkpoint (`ckpt_path=auto` on a restart) keeps it and does not re-initialise."""
    source, loras = cfg.get("init_from"), [str(p) for p in cfg.get("init_lora") or []]
    if not (source or loras):
        return
    if ckpt_path is not None:
        if rank_zero_only.rank == 0:
            given = " and ".join(name for name, value in (("init_from", source), ("init_lora", loras)) if value)
            print(f"{given} ignored: resuming {ckpt_path} (a restarted run resumes, it does not re-initialise)",
                  flush=True)
        return
    lines = merge_lora_files(model, loras) if loras and not source else []
    if not source:
        if rank_zero_only.rank == 0:
            print("\n".join(lines), flush=True)
        return
    weights = str(cfg.get("init_weights", "ema"))
    if weights not in ("ema", "raw"):
        raise WantrainError(f"init_weights={weights!r}: use ema (the EMA copy) or raw (the trained weights)")
    report = init_weights(model, source, use_ema=weights == "ema", strict=bool(cfg.get("init_strict", False)),
                          fresh=list(cfg.get("init_fresh") or []))
    lines = [report.text(), *(merge_lora_files(model, loras) if loras else [])]  # LoRA onto the loaded weights
    if rank_zero_only.rank == 0:
        print("\n".join(lines), flush=True)


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Check and build data, model and Trainer (nothing written yet), start from `init_from` weights when given,
    then start the run and fit, resuming per `ckpt_path`."""
    with user_errors():
        if cfg.get("init_required") and not cfg.get("init_from"):
            raise WantrainError("this experiment fine-tunes trained weights: pass init_from=PATH (a run folder, a "
                                ".ckpt, an exported model folder or a .safetensors file)")
        run_config = OmegaConf.to_container(cfg, resolve=True)
        ready = prepare_run(cfg, "fit", [RunConfigInCheckpoint(run_config)], build_trainer)  # (tests wrap it)
        start_from_weights(cfg, ready.model, ready.ckpt_path)
        run_dir = start_run(cfg)
        for logger in ready.trainer.loggers:
            logger.log_hyperparams(run_config)  # the whole resolved config, not only the module's arguments
        ready.trainer.fit(ready.model, datamodule=ready.datamodule, ckpt_path=ready.ckpt_path)
        print_run_summary(run_dir)
