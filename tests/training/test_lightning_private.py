"""The private Lightning APIs in training/lightning_private.py still exist (why pytorch-lightning is `<2.7`)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import ClusterEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import combined_loader

from wantrain.training import lightning_private as lp

PACKAGE = Path(__file__).resolve().parents[2] / "wantrain"


def test_trainer_and_module_privates(tmp_path: Path) -> None:
    module = pl.LightningModule()
    assert lp.attached_trainer(module) is None
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, default_root_dir=tmp_path)
    module.trainer = trainer
    assert lp.attached_trainer(module) is trainer
    assert isinstance(lp.cluster_environment(trainer), ClusterEnvironment)


def test_ddp_kwargs() -> None:
    assert lp.ddp_finds_unused_parameters(DDPStrategy(find_unused_parameters=True))
    assert not lp.ddp_finds_unused_parameters(DDPStrategy())


def test_model_checkpoint_privates(tmp_path: Path) -> None:
    callback = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    assert lp.last_saved_step(callback) == 0
    assert callable(callback._save_last_checkpoint) and callable(callback._monitor_candidates)
    assert list(inspect.signature(callback._save_last_checkpoint).parameters) == ["trainer", "monitor_candidates"]


def test_wandb_logger_privates(tmp_path: Path) -> None:
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled")
    assert lp.wandb_init_kwargs(logger)["mode"] == "disabled"
    lp.forget_wandb_run(logger)
    assert logger._experiment is None


def test_teardown_protocol_of_loaders() -> None:
    """Lightning stops a loader's workers through `loader._iterator` (ShardLoader provides it)."""
    assert "_iterator" in inspect.getsource(combined_loader._shutdown_workers_and_reset_iterator)


def test_no_private_lightning_use_outside_the_module() -> None:
    """No other wantrain file reaches into a Lightning object's underscored attributes."""
    private = {"_trainer", "_accelerator_connector", "_ddp_kwargs", "_last_global_step_saved",
               "_save_last_checkpoint", "_monitor_candidates", "_wandb_init"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "lightning_private.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr") \
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                name = node.args[1].value
            if name in private:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    assert not found, found
