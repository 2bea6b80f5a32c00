"""Through the real `main()`, in-process: each command's own help page (its keys from the config schema), a bad
command value refused in one line, any Trainer argument as trainer.KEY,
no `__main__.log`, and a bench table that stays readable when stdout is not a terminal."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from wantrain.commands.argv import trainer_overrides
from wantrain.commands.cli import main
from wantrain.commands.help import defaults_list
from wantrain.commands.registry import COMMANDS
from wantrain.config_schema import schema_of
from wantrain.config_schema.bench import BENCHES
from wantrain.config_tree import config_dir, list_experiments
from wantrain.schema import doc_of, key_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run `python -m wantrain ARGS` in this process from tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["wantrain"])  # main() hands argv to Hydra (and Lightning's DDP relaunch)
    monkeypatch.setenv("WANTRAIN_RUN_STAMP", "t")
    monkeypatch.delenv("WANTRAIN_ROOT", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_fit_help_is_wantrains_own(cli, flag):
    code, out, _ = cli("fit", flag)
    assert code == 0
    assert out.startswith("usage: python -m wantrain fit")
    assert "Powered by Hydra" not in out and "== Config ==" not in out  # not Hydra's stock page
    for group, options in (("data", ["*synthetic", "shards"]), ("model", ["*i2v_tiny", "i2v_64"]),
                           ("trainer", ["*default", "ddp", "fsdp"]), ("logger", ["*default", "wandb"])):
        line = next(line for line in out.splitlines() if line.strip().startswith(group + " "))
        assert all(option in line.split() for option in options), line
    for experiment in list_experiments():
        assert f"  {experiment} " in out
    for key in ("run_dir=", "seed=0", "ckpt_path=auto", "data.KEY=VALUE", "model.KEY=VALUE", "trainer.KEY=VALUE",
                "examples:", "docs/training.md", "--cfg job"):
        assert key in out, key
    assert "batch_size" in out  # data keys are listed


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_help_page(cli, name):
    code, out, _ = cli(name, "--help")
    assert code == 0 and out.startswith(f"usage: python -m wantrain {name}")
    assert "examples:" in out
    pages = re.findall(r"docs/[a-z-]+\.md", out.splitlines()[-1])  # "More in docs/....md": pages that exist
    assert pages and all((REPO / page).is_file() for page in pages), out.splitlines()[-1]
    for action in COMMANDS[name].actions:
        assert f"  {action}" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_keys_are_the_schemas_fields_with_their_defaults_and_docs(cli, name):
    """Every own key of a command's schema is on its page as KEY=default, its doc beside it (wrapped)."""
    code, out, _ = cli(name, "--help")
    flat = " ".join(out.split())
    schema = schema_of(COMMANDS[name].config_name)
    groups = {group for group, _ in defaults_list(COMMANDS[name].config_name)} | {"experiment"}
    for field in (f for f in dataclasses.fields(schema) if key_of(f) not in groups):
        assert f"  {key_of(field)}=" in out, key_of(field)
        assert " ".join(doc_of(field, resolve=False).split()) in flat, key_of(field)


@pytest.mark.parametrize("action", sorted(BENCHES))
def test_bench_action_help_lists_its_keys(cli, action):
    code, out, _ = cli("bench", action, "--help")
    assert code == 0
    for field in dataclasses.fields(BENCHES[action]):
        assert f"  bench.{key_of(field)}=" in out, key_of(field)


def test_bench_help_describes_each_action_from_its_schema(cli):
    code, out, _ = cli("bench", "--help")
    assert code == 0
    for action in BENCHES:
        line = next(line for line in out.splitlines() if line.startswith(f"  {action} "))
        assert line.split(None, 1)[1][:30] in " ".join(BENCHES[action].__doc__.split()), line


def test_help_pages_import_neither_torch_nor_hydra():
    """Help is read from the schema and the config tree only: no torch, Lightning or Hydra import (a subprocess, as
    this test process has them all)."""
    pages = "; ".join(f"main({[*args, '--help']!r})" for args in ([n] for n in COMMANDS))
    code = (f"import sys; from wantrain.commands.cli import main; {pages}; main(['bench', 'quality', '--help']); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'hydra', 'pytorch_lightning', "
            "'diffusers'}); print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "HEAVY []", result.stdout.splitlines()[-1]


@pytest.mark.parametrize(("args", "message"), [
    (("sample", "crf=60"), "crf=60: out of range, use a value >= 0 and <= 51"),
    (("bench", "unet", "bench.dtype=fp17"), "bench.dtype='fp17': not allowed (did you mean fp16?)"),
])
def test_a_bad_command_value_fails_in_one_line_before_anything_is_written(cli, tmp_path, args, message):
    code, out, err = cli(*args)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"wantrain: error: {message}"), line
    assert not list(tmp_path.iterdir())


def test_top_level_help_points_at_command_help(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "COMMAND --help" in out


def test_cfg_job_still_prints_the_composed_config(cli):
    code, out, _ = cli("fit", "--cfg", "job", "trainer.val_check_interval=2")
    assert code == 0
    assert "val_check_interval: 2" in out and "max_steps:" in out


def test_any_trainer_argument_is_a_trainer_key(compose, tmp_path):
    """`trainer.val_check_interval=2` is not in conf/trainer/ yet reaches the Trainer; keys it has still override."""
    overrides = trainer_overrides(["trainer.val_check_interval=2", "trainer.max_steps=7", "seed=3"])
    assert overrides == ["++trainer.val_check_interval=2", "++trainer.max_steps=7", "seed=3"]
    cfg = compose(*overrides, root=tmp_path)
    trainer = instantiate(cfg.trainer, plugins=None, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False)
    assert trainer.val_check_interval == 2 and trainer.max_steps == 7


@pytest.mark.parametrize("key, expected", [
    ("trainer.max_step=5", "unknown Trainer argument trainer.max_step (did you mean trainer.max_steps?)"),
    ("trainer.val_check_intervall=2", "did you mean trainer.val_check_interval?"),
    ("+trainer.no_such_argument=1", "unknown Trainer argument trainer.no_such_argument;"),
])
def test_unknown_trainer_arguments_fail_in_one_line(cli, key, expected, tmp_path):
    code, _, err = cli("fit", key)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("wantrain: error: unknown Trainer argument") and expected in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config", ["config", "test", "sample", "encode", "bench", "shards"])
def test_hydra_logs_to_the_console_only(config):
    """Hydra's default job logging writes RUN_DIR/__main__.log; wantrain's logs to the console only."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config, return_hydra_config=True)
    assert set(cfg.hydra.job_logging.handlers) == {"console"}


def test_bench_prints_a_plain_table_writes_runs_bench_and_no_log_file(cli, tmp_path):
    code, out, _ = cli("bench", "unet", "bench.device=cpu", "bench.batch_size=1", "bench.num_frames=2",
                       "bench.height=8", "bench.width=8", "bench.iters=1", "bench.warmup=0",
                       "bench.compare_diffusers=false", "bench.unet.model_channels=8", "bench.unet.head_dim=8",
                       "bench.unet.norm_groups=4")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("wantrain bench unet")
    header, row = lines[start + 1].split(), lines[start + 2].split()
    assert header[:3] == ["model", "params_M", "device"] and "samples_per_s" in header and "…" not in out
    assert row[0] == "SpatioTemporalUNet" and row[2] == "cpu"
    (path,) = (tmp_path / "runs" / "bench").glob("unet-*.json")
    assert path.name == "unet-t.json" and json.loads(path.read_text())["rows"][0]["model"] == "SpatioTemporalUNet"
    assert f"wrote {path}" in out
    assert not list(tmp_path.rglob("*.log")) and not (tmp_path / "runs" / "bench" / ".hydra").exists()
