"""Start of every training-type command: seed, run directory, saved and printed config."""

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


def start_run(cfg: DictConfig) -> Path:
    """Seed everything, create `run_dir`, save the resolved config there and print it (rank 0)."""
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        if cfg.get("print_config", True):
            print_config_tree(cfg)
    return run_dir
