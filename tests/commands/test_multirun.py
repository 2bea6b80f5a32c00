"""A local Hydra multirun: every sweep point is its own run, and `logger=none` trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf


@pytest.mark.slow
def test_local_sweep_points_get_their_own_run_dirs(wantrain_cli, data_dir: Path, tmp_path: Path):
    result = wantrain_cli(
        ["fit", "-m", f"paths.data_dir={data_dir}", "debug=fast", "logger=none", "seed=1,2"],
        cwd=tmp_path, env={"WANTRAIN_RUN_STAMP": "sweep"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs"
    assert (runs / "multirun" / "sweep" / "multirun.yaml").is_file()
    seeds = {OmegaConf.load(runs / f"sweep_{n}" / "config.yaml").seed for n in (0, 1)}
    assert seeds == {1, 2}
