"""`python -m wantrain fit +experiment=NAME` for every tiny experiment, with a tiny step budget, as a user runs it.
`i2v_tiny` is the bare `fit` (test_experiments.py): its launch is tests/commands/test_preflight.py's
test_fit_prints_no_third_party_noise, which checks the same files (one launch fewer)."""

from __future__ import annotations

import pytest
import torch

from wantrain.config_tree import list_experiments

TINY = [name for name in list_experiments() if name.endswith("_tiny") and name != "i2v_tiny"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_tiny_experiment_fits_and_writes_a_checkpoint(wantrain_cli, data_dir, tmp_path, name):
    """Also `WANDB_MODE=disabled` (run_wantrain's default) with the default loggers (csv + wandb): no wandb files."""
    result = wantrain_cli(["fit", f"+experiment={name}", f"paths.data_dir={data_dir}", "run_name=tiny",
                           "trainer.max_steps=2", "data.samples_per_epoch=8", "data.num_workers=0",
                           "trainer.limit_val_batches=1", "print_config=false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] >= 2
    assert checkpoint["wantrain_config"]["model"]["_target_"].startswith("wantrain.training.")
    assert (run_dir / "config.yaml").is_file() and len(list(run_dir.glob("csv/*/metrics.csv"))) == 1
    assert not (run_dir / "wandb").exists() and not (tmp_path / "wandb").exists()
