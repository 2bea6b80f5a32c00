"""The command line as a user meets it: help, one-line errors with exit code 2, config from an installed wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wantrain.__main__ import COMMANDS
from wantrain.config_tree import list_experiments

REPO = Path(__file__).resolve().parents[2]


def test_no_arguments_prints_commands_and_experiments(wantrain_cli, tmp_path):
    for args in ([], ["--help"]):
        result = wantrain_cli(args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        for name in [*COMMANDS, *list_experiments()]:
            assert name in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["trian"], "unknown command 'trian'"),
    (["fit", "+experiment=no_such_thing"], "unknown experiment 'no_such_thing'"),
    (["fit", "model.no_such_key=1"], "bad override"),
    (["fit", "trainer=no_such_trainer"], "bad override"),
    (["fit", "trainer.max_steps=[1"], "bad override"),
    (["bench", "nothing"], "needs an action"),
    (["fit", "data=shards", "data.train_shards=/data/{00000..00003}.tar"], "quote values with braces"),
])
def test_bad_command_lines_fail_in_one_line_with_code_2(wantrain_cli, tmp_path, args, expected):
    result = wantrain_cli(args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_unset_mandatory_value_is_named_in_one_line(wantrain_cli, tmp_path):
    result = wantrain_cli(["fit", "data=shards", "print_config=false"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "wantrain: error: data.train_shards is not set (it is ??? in the config); pass data.train_shards=VALUE")


def test_missing_shards_are_named_in_one_line(wantrain_cli, tmp_path):
    result = wantrain_cli(["fit", "data=shards", f"data.train_shards='{tmp_path}/none/{{00000..00003}}.tar'",
                           "print_config=false"], cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wantrain: error: data.train_shards:") and f"{tmp_path}/none/00000.tar" in last


def test_sample_without_inputs_says_what_to_pass_in_one_line(wantrain_cli, tmp_path):
    result = wantrain_cli(["sample"], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("wantrain: error: nothing to sample: pass image=PATH")


def test_config_tree_is_found_from_an_installed_wheel(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels)], check=True, cwd=tmp_path, timeout=300)
    wheel = next(wheels.glob("wantrain-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", str(wheel), "--no-deps", "-q", "--target", str(site)],
                   check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run([sys.executable, "-c", "import wantrain.config_tree as c; print(c.config_dir())"],
                           cwd=elsewhere, env=env, text=True, capture_output=True, check=True)
    assert probe.stdout.strip().startswith(str(site)), probe.stdout
    shown = subprocess.run([sys.executable, "-m", "wantrain", "fit", "--cfg", "job", "--resolve",
                            "+experiment=i2v_tiny"], cwd=elsewhere, env=env, text=True, capture_output=True)
    assert shown.returncode == 0, shown.stderr
    assert "wantrain.training.video_diffusion.VideoDiffusionModule" in shown.stdout
    assert str(elsewhere / "runs") in shown.stdout  # run_dir follows the launch directory
