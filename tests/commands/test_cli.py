"""The command line as a user meets it: help, one-line errors with exit code 2, config from an installed wheel.
Help and error paths call the CLI's own `main()` in this process (same argv parsing, Hydra run and error printing
as `python -m wantrain`); one error and the installed wheel run as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wantrain.commands.cli import main
from wantrain.commands.registry import COMMANDS
from wantrain.config_tree import list_experiments

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`python -m wantrain ARGS` in this process from tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["wantrain"])
    for key in ("WANTRAIN_RUN_STAMP", "WANTRAIN_ROOT", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return int(code or 0), out, err
    return run


def test_no_arguments_prints_commands_and_experiments(cli):
    for args in ([], ["--help"]):
        code, out, err = cli(*args)
        assert code == 0, err
        for name in [*COMMANDS, *list_experiments()]:
            assert name in out


BAD_LINES = [
    (["trian"], "unknown command 'trian'"),
    (["fit", "+experiment=no_such_thing"], "unknown experiment 'no_such_thing'"),
    (["fit", "model.no_such_key=1"], "bad override"),
    (["fit", "trainer=no_such_trainer"], "bad override"),
    (["fit", "trainer.max_steps=[1"], "bad override"),
    (["bench", "nothing"], "needs an action"),
    (["fit", "data=shards", "data.train_shards=/data/{00000..00003}.tar"], "quote values with braces"),
]


@pytest.mark.parametrize("args, expected", BAD_LINES)
def test_bad_command_lines_fail_in_one_line_with_code_2(cli, tmp_path, args, expected):
    code, _, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, expected", [BAD_LINES[0], BAD_LINES[2]])
def test_bad_command_lines_in_a_real_process(wantrain_cli, tmp_path, args, expected):
    """As a user sees it: imports included, nothing else on stderr (before Hydra, and from Hydra's own parser)."""
    result = wantrain_cli(args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_unset_mandatory_value_is_named_in_one_line(cli):
    code, _, err = cli("fit", "data=shards", "print_config=false")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "wantrain: error: data.train_shards is not set (it is ??? in the config); pass data.train_shards=VALUE")


def test_sample_without_inputs_says_what_to_pass_in_one_line(cli):
    code, _, err = cli("sample")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("wantrain: error: nothing to sample: pass image=PATH")


@pytest.mark.slow
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
