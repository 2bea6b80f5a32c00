"""Start of every training-type command: seed, then (after the preflight) run directory, saved and printed config."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only


def print_config_tree(cfg: DictConfig,
                      order: tuple[str, ...] = ("data", "model", "trainer", "callbacks", "logger")) -> None:
    """Print the resolved config as a rich tree, one branch per group."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [f for f in order if f in cfg] + [f for f in cfg if f not in order and f != "hydra"]
    for field in fields:
        value = cfg[field]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        tree.add(field, style="bold").add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def seed_run(cfg: DictConfig) -> None:
    """Seed python, numpy and torch (and the loader workers) from `cfg.seed`, before anything is built."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)


def write_hydra_record(cfg: DictConfig, folder: Path) -> None:
    """Hydra's record of the launch in `folder/.hydra/` (config.yaml unresolved, hydra.yaml, overrides.yaml):
    written here, after the preflight checks, because Hydra itself is told to write nothing (conf/hydra)."""
    from hydra.core.hydra_config import HydraConfig

    record = folder / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, record / "config.yaml")
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), record / "hydra.yaml")
        OmegaConf.save(hydra_cfg.overrides.task, record / "overrides.yaml")


def start_run(cfg: DictConfig) -> Path:
    """The first side effect of a run, after the preflight checks: create `run_dir`, save the resolved config
    and Hydra's record there and print the config (rank 0)."""
    run_dir = Path(cfg.run_dir)
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        write_hydra_record(cfg, run_dir)
        if cfg.get("print_config", True):
            print_config_tree(cfg)
    return run_dir


def print_run_summary(run_dir: Path) -> None:
    """One closing line: where the run's files are and how to continue it (rank 0)."""
    if rank_zero_only.rank != 0:
        return
    parts = [name for name in ("checkpoints/last.ckpt", "samples/", "csv/", "export/") if (run_dir / name).exists()]
    offline = sorted(run_dir.glob("wandb/offline-run-*"))
    if offline:
        parts.append(f"wandb/ (offline: `wandb sync {run_dir}/wandb/offline-run-*`)")
    print(f"run folder {run_dir}: {', '.join(parts) or 'empty'}; continue it with run_name={run_dir.name} and a "
          "larger trainer.max_steps", flush=True)

