"""`python -m wantrain sample` on tiny trained checkpoints: base + one ×2 stage to mp4, batch mode over a prompts
file, export round trip, and one-line errors (exit 1) for bad checkpoints, images, prompts and sizes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from in_process import run_main  # the in-process CLI
from PIL import Image

# A few optimizer steps are enough: the tests check the plumbing (shapes, seeds, export), not sample quality.
FIT_COMMON = ["trainer.max_steps=3", "data.samples_per_epoch=6", "data.batch_size=2", "data.num_workers=0",
              "trainer.limit_val_batches=0", "logger=csv", "print_config=false"]
SAMPLE_FAST = ["steps=2"]


def train_tiny_stages(data_dir: Path, root: Path) -> dict[str, Path]:
    """Train the tiny base (8×32×32) and a ×2 stage (32→64) once per test session (cached under `root`), through the
    CLI's `main()` in this process: the fits are not about process boundaries, and the imports are paid already."""
    done = root / "done"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        jobs = [["fit", "+experiment=i2v_tiny", "run_name=base", "model.sampling.every_n_steps=0"],
                ["fit", "+experiment=sr_tiny", "run_name=sr", "model.validation.every_n_steps=0"]]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WANDB_MODE", "disabled")
            for job in jobs:
                assert run_main([*job, f"paths.data_dir={data_dir}", *FIT_COMMON], root) == 0, job
        done.touch()
    return {"base": root / "runs/base/checkpoints/last.ckpt", "sr": root / "runs/sr/checkpoints/last.ckpt",
            "data_dir": data_dir}


@pytest.fixture(scope="module")
def stages(data_dir, tmp_path_factory):
    return train_tiny_stages(data_dir, tmp_path_factory.getbasetemp() / "tiny-stages")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A non-square first frame (48×60): resized to cover 32×32 and centre-cropped."""
    pixels = np.zeros((48, 60, 3), np.uint8)
    pixels[10:30, 20:44] = (220, 40, 30)
    path = tmp_path_factory.mktemp("img") / "first.png"
    Image.fromarray(pixels).save(path)
    return path


def frames_of(path: Path) -> np.ndarray:
    """Decoded (T, H, W, 3) uint8 frames of an mp4, with PyAV."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def single(stages, image, tmp_path_factory):
    """One clip, seed 3, through base + stage, with a PNG grid."""
    folder = tmp_path_factory.mktemp("single")
    out = folder / "one.mp4"
    code = run_main(["sample", f"base_ckpt={stages['base']}", f"sr_ckpts=[{stages['sr']}]", f"image={image}",
                     "prompt=a red square moving", "seed=3", f"out={out}", "grid=true", *SAMPLE_FAST], folder)
    assert code == 0
    return out


@pytest.fixture(scope="module")
def exported(stages, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    code = run_main(["sample", f"base_ckpt={stages['base']}", f"sr_ckpts=[{stages['sr']}]",
                     f"export={folder / 'pipe'}"], folder)
    assert code == 0
    return folder / "pipe"


def test_sample_writes_an_mp4_at_the_upsampled_size(single):
    frames = frames_of(single)
    assert frames.shape == (8, 64, 64, 3)  # the base's 8 frames, 32 px ×2
    assert frames.std() > 1  # not a blank clip
    grid = Image.open(single.with_suffix(".png"))
    assert grid.size == (3 * 64, 3 * 64)  # 8 frames in rows of ceil(sqrt(8)) = 3
    record = json.loads((single.parent / "runs").glob("sample/*/samples-rank0.jsonl").__next__().read_text())
    assert record["seed"] == 3 and record["stages"] == 1 and record["num_steps"] == 2


def test_export_holds_safetensors_and_configs(exported, stages):
    index = json.loads((exported / "wantrain_export.json").read_text())
    assert index["stages"] == ["sr_stage1"]  # named like the experiment that trained it
    for name in ("base", "sr_stage1"):  # one format: config.json + model.safetensors (one state dict) per model
        assert {p.name for p in (exported / name).iterdir()} == {"config.json", "model.safetensors"}
    config = json.loads((exported / "sr_stage1" / "config.json").read_text())
    assert config["lr_size"] == [32, 32] and config["stage"] == 1
    # fit wrote the same format at the end of training: the same weights, the same stage description
    from_fit = stages["sr"].parent.parent / "export" / "sr_stage1"
    assert {p.name for p in from_fit.iterdir()} == {"config.json", "model.safetensors"}
    fit_config = json.loads((from_fit / "config.json").read_text())
    keys = ("kind", "stage", "lr_size")
    assert {k: fit_config[k] for k in keys} == {k: config[k] for k in keys}
    assert (from_fit / "model.safetensors").read_bytes() == (exported / "sr_stage1" / "model.safetensors").read_bytes()


def test_fits_export_samples_the_same_clip_as_its_checkpoint(stages, single, image, tmp_path):
    out = tmp_path / "from-fit-export.mp4"
    fit_export = stages["sr"].parent.parent / "export" / "sr_stage1"
    code = run_main(["sample", f"base_ckpt={stages['base']}", f"sr_ckpts=[{fit_export}]", f"image={image}",
                     "prompt=a red square moving", "seed=3", f"out={out}", *SAMPLE_FAST], tmp_path)
    assert code == 0
    assert np.array_equal(frames_of(out), frames_of(single))


def test_export_loads_without_lightning(exported, tmp_path):
    code = ("import sys; from wantrain.inference import load_exported; p = load_exported(sys.argv[1]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra')]; "
            "assert not bad, bad; print(p.sizes)")
    result = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[(32, 32), (64, 64)]" in result.stdout


def test_batch_mode_from_an_export_matches_seeds(exported, single, image, tmp_path):
    rows = [{"image": str(image), "prompt": "a red square moving", "seed": 3},
            {"image": image.name, "prompt": "a red square moving", "seed": 3, "out": "again.mp4"},
            {"image": str(image), "prompt": "a red square moving", "seed": 4}]
    shutil.copy(image, tmp_path / image.name)  # the second row's relative path is taken from the file's folder
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in rows))
    code = run_main(["sample", f"base_ckpt={exported}", f"prompts={prompts}", "batch_size=2",
                     f"out_dir={tmp_path / 'out'}", *SAMPLE_FAST], tmp_path)
    assert code == 0
    first, again, other = (frames_of(tmp_path / "out" / n) for n in ("00000.mp4", "again.mp4", "00002.mp4"))
    reference = frames_of(single)  # seed 3 from the .ckpt files, alone in its batch
    assert np.array_equal(first, reference) and np.array_equal(again, reference)
    assert np.abs(other.astype(int) - reference.astype(int)).mean() > 1  # another seed, another clip
    assert len((tmp_path / "out" / "samples-rank0.jsonl").read_text().splitlines()) == 3


def test_sample_error_exits_1_in_one_line(stages, image, wantrain_cli, tmp_path):
    result = wantrain_cli(["sample", f"base_ckpt={stages['sr']}", f"image={image}", "prompt=x"], cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is an upsampler stage, not a base" in lines[0], result.stderr


def _mismatched_stage(exported: Path, folder: Path) -> Path:
    """The exported stage, relabelled as trained for 64→128 (what a stage-2 checkpoint says)."""
    stage = folder / "sr_64"
    shutil.copytree(exported / "sr_stage1", stage)
    config = json.loads((stage / "config.json").read_text())
    (stage / "config.json").write_text(json.dumps({**config, "lr_size": [64, 64], "stage": 2}))
    return stage


@pytest.mark.parametrize("case, expected", [
    ("base_as_sr", "is a base (diffusion) model, not an upsampler stage"),
    ("stage_mismatch", "(sr_stage2) was trained on 64x64 -> 128x128 but the clip entering it is 32x32"),
    ("missing_ckpt", "no such file or folder"),
    ("garbage_ckpt", "is not a readable checkpoint"),
    ("bad_image", "cannot be read as an image"),
    ("long_prompt", "over the text encoder's limit of 77"),
    ("unreachable_size", "size=256 cannot be produced"),
])
def test_sample_errors_are_one_line(case, expected, stages, exported, image, tmp_path, capsys):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    base, sr, img, prompt = str(stages["base"]), [str(stages["sr"])], str(image), "a red square"
    extra: list[str] = []
    if case == "base_as_sr":
        sr = [base]
    elif case == "stage_mismatch":
        sr = [str(_mismatched_stage(exported, tmp_path))]
    elif case == "missing_ckpt":
        base = str(tmp_path / "nothing.ckpt")
    elif case == "garbage_ckpt":
        base = str(garbage)
    elif case == "bad_image":
        img = str(garbage)
    elif case == "long_prompt":
        prompt = "a red square " * 60
    elif case == "unreachable_size":
        extra = ["size=256"]
    code = run_main(["sample", f"base_ckpt={base}", f"sr_ckpts=[{','.join(sr)}]", f"image={img}",
                     f"prompt={prompt}", *extra, *SAMPLE_FAST], tmp_path)
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not list(tmp_path.glob("runs/sample/*/*.mp4"))


def test_export_pipeline_equals_checkpoint_pipeline_in_process(stages, exported, image):
    from wantrain.inference import load_exported, load_pipeline, read_image

    pixels = read_image(image, (32, 32))[None]
    from_ckpt = load_pipeline(stages["base"], [stages["sr"]])
    from_export = load_exported(exported)
    a = from_ckpt(pixels, ["a red square"], [5], num_steps=2)
    b = from_export(pixels, ["a red square"], [5], num_steps=2)
    assert a.shape == (1, 3, 8, 64, 64) and torch.equal(a, b)
    raw = load_pipeline(stages["base"], [stages["sr"]], use_ema=False)(pixels, ["a red square"], [5], num_steps=2)
    assert not torch.equal(raw, a)  # use_ema=false really takes the other weights


@pytest.mark.ddp
def test_two_ranks_split_a_prompts_file_and_sample_alike(exported, single, image, tmp_path):
    rows = [{"image": str(image), "prompt": "a red square moving", "seed": s} for s in (3, 3, 4)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANTRAIN_", "SLURM_", "RANK", "WORLD_SIZE"))}
    env.update({"WANDB_MODE": "disabled", "WANTRAIN_RUN_STAMP": "ranks", "WORLD_SIZE": "2"})
    ranks = [subprocess.Popen([sys.executable, "-m", "wantrain", "sample", f"base_ckpt={exported}",
                               f"prompts={prompts}", "batch_size=2", f"out_dir={tmp_path / 'out'}", *SAMPLE_FAST],
                              cwd=tmp_path, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    for proc in ranks:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    out = tmp_path / "out"
    records = {r: [json.loads(line) for line in (out / f"samples-rank{r}.jsonl").read_text().splitlines()]
               for r in (0, 1)}
    assert [len(records[0]), len(records[1])] == [2, 1]  # every 2nd row: rows 0, 2 on rank 0; row 1 on rank 1
    assert sorted(p.name for p in out.glob("*.mp4")) == ["00000.mp4", "00001.mp4", "00002.mp4"]
    reference = frames_of(single)  # seed 3: the same clip on either rank
    assert np.array_equal(frames_of(out / "00000.mp4"), reference)
    assert np.array_equal(frames_of(out / "00001.mp4"), reference)
