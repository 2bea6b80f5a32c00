"""One-shot GPU acceptance run (scripts/gpu-check.sh): every part as a real `python -m wantrain ...` launch with a
time limit, figures collected into one JSON report. `--cpu` runs the same launches at tiny sizes on the CPU (the
parts that need CUDA are reported as skipped): tests/test_gpu_check.py runs it that way.

Parts: synthetic shards; `bench plan` for the fit below; plan vs measured peak memory of the i2v_64 step; a
bf16-mixed fit of i2v_64 at full width (tiny random encoders: no weights on a fresh GPU box); `bench unet` at
i2v_64 width with and without torch.compile; `bench step` (Lightning vs bare); an FSDP bf16 fit on the GPUs
present; the Wan DiT under trainer=fsdp2 (FSDP2 + checkpointing + compile, world size 1, memory vs plan, MFU); an
upsampler stage (sr_stage1 width) fit + a bf16 `sample` through base -> stage with tiling; a `sr_stage4` step at
its full size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "wantrain"]

# (GPU, CPU) sizes; the CPU ones only prove that every launch composes and runs
SIZES = {
    "gpu": {"batch": 8, "frames": 16, "size": 64, "steps": 6, "width": [], "sr4": [], "clips": 64, "unet_width": 256,
            "unet_iters": 10, "plan_case": {"frames": 16, "height": 64, "width": 64, "batch": 4}},
    "cpu": {"batch": 1, "frames": 4, "size": 16, "steps": 2, "clips": 4, "unet_width": 16, "unet_iters": 1,
            "width": ["model.unet.model_channels=16", "model.unet.norm_groups=8", "model.unet.head_dim=16"],
            "sr4": ["model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8",
                    "model.crop_size=32", "data.resolution=64", "model.base_size=4", "data.num_frames=2"],
            "plan_case": {"frames": 4, "height": 16, "width": 16, "batch": 1}},
}


def tiny_encoders(data_dir: Path) -> list[str]:
    """i2v_64 with the tiny random T5 / DiT (built on first use): a fresh GPU box has no T5-XXL / DiT weights."""
    return ["model.build_tiny_encoders=true", f"model.text_encoder.path={data_dir}/encoders/tiny-t5",
            f"model.image_encoder.path={data_dir}/encoders/tiny-dit", "model.text_encoder.dtype=float32",
            "model.image_encoder.dtype=float32", "model.image_encoder.block=-1", "model.fusion.text_dim=32",
            "model.fusion.image_dim=32"]


def launch(name: str, argv: list[str], timeout: int, log_dir: Path, env: dict[str, str] | None = None) -> dict:
    """Run one part; its output goes to log_dir/NAME.log; -> {rc, seconds, tail}."""
    start = time.perf_counter()
    log = log_dir / f"{name}.log"
    with log.open("w") as out:
        try:
            rc = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                env={**os.environ, **(env or {})}).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    tail = log.read_text(errors="replace").splitlines()[-5:]
    return {"rc": rc, "seconds": round(time.perf_counter() - start, 1), "log": str(log), "tail": tail}


def bench_rows(out_dir: Path, action: str, run_name: str) -> list[dict]:
    """The rows of a bench JSON (empty when the run failed)."""
    path = out_dir / f"{action}-{run_name}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def csv_max(run_dir: Path, column: str) -> float | None:
    """The largest value of a logged metric in a run's CSV logger output."""
    values = []
    for path in run_dir.glob("csv/*/metrics.csv"):
        with path.open() as f:
            values += [float(r[column]) for r in csv.DictReader(f) if r.get(column) not in (None, "")]
    return max(values) if values else None


def first_frame(path: Path) -> Path:
    """A 128 x 128 colour-gradient PNG: the sample's input image."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 128, dtype=np.uint8)
    Image.fromarray(np.stack([ramp[None].repeat(128, 0), ramp[:, None].repeat(128, 1),
                              np.full((128, 128), 90, np.uint8)], -1)).save(path)
    return path


def main() -> int:
    """Run the parts in order and write the report; exit 0 when every part that ran succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-check")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU; CUDA-only parts skipped")
    args = parser.parse_args()
    mode = "cpu" if args.cpu else "gpu"
    z = SIZES[mode]
    out = args.out.resolve()
    logs, data_dir, runs = out / "logs", out / "data", out / "runs"
    for d in (logs, data_dir, runs):
        d.mkdir(parents=True, exist_ok=True)
    import torch

    gpus = torch.cuda.device_count()
    report: dict[str, Any] = {"mode": mode, "gpus": gpus, "gpu": torch.cuda.get_device_name() if gpus else None,
                              "torch": torch.__version__, "parts": {}}
    parts = report["parts"]
    common = [f"paths.data_dir={data_dir}", f"paths.runs_dir={runs}"]
    trainer = ["trainer=gpu", "trainer.devices=1"] if mode == "gpu" else ["trainer=cpu"]
    shards = data_dir / "synthetic"
    data = [f"data.train_shards={shards}/train-00000.tar", f"data.val_shards={shards}/val-00000.tar",
            f"data.num_frames={z['frames']}", f"data.resolution={z['size']}", f"data.batch_size={z['batch']}",
            "data.num_workers=2", "data.fps=null", f"trainer.max_steps={z['steps']}", "logger=csv",
            "trainer.log_every_n_steps=1"]
    base = ["+experiment=i2v_64", *common, *tiny_encoders(data_dir), *data, *z["width"]]

    parts["shards"] = launch("shards", [*PY, "shards", "synthetic", f"out={shards}", f"num_clips={z['clips']}",
                                        f"shard_size={z['clips']}", "num_val_clips=4", "synthetic.size=128",
                                        "synthetic.num_frames=32", "progress=false", *common[:1]], 120, logs)

    plan_train = [o for o in base if not o.startswith(("paths.", "data.train_shards", "data.val_shards"))]
    # CPU-only work (FakeTensor tracing at full size): in the background while the GPU parts run. On the CPU the
    # same command is tests/benchmarks/test_plan.py's (42 s of tracing that would only repeat it)
    plan_argv = [*PY, "bench", "plan", *plan_train, f"out_dir={out}", "run_name=gpu-check"]
    planning = ThreadPoolExecutor(1).submit(launch, "plan", plan_argv, 420, logs) if mode == "gpu" else None

    case = {"overrides": ["+experiment=i2v_64", *z["width"]], "checkpointing": True,
            "precision": "bf16-mixed" if mode == "gpu" else "32-true", **z["plan_case"]}
    if mode == "gpu":  # on the CPU this is tests/benchmarks/test_plan.py's real-vs-traced check (same module)
        parts["plan_vs_measured"] = launch(
            "plan_vs_measured", [sys.executable, "-m", "wantrain.benchmarks.plan_validate", json.dumps([case]),
                                 "cuda"], 240, logs, {"MALLOC_MMAP_THRESHOLD_": "65536"})
    else:
        parts["plan_vs_measured"] = {"skipped": "the CPU check is tests/benchmarks/test_plan.py (same module)"}
    lines = Path(parts["plan_vs_measured"].get("log", os.devnull)).read_text().strip().splitlines()
    if parts["plan_vs_measured"].get("rc") == 0 and lines:
        (r,) = json.loads(lines[-1])
        parts["plan_vs_measured"].update(traced_gib=r["traced_bytes"] / 2**30, measured_gib=r["measured_bytes"] / 2**30,
                                         ratio=r["measured_bytes"] / max(1, r["traced_bytes"]))

    fit_dir = runs / "fit-i2v_64"
    parts["fit_i2v_64"] = launch("fit_i2v_64", [*PY, "fit", *base, *trainer, f"run_dir={fit_dir}"], 300, logs)
    parts["fit_i2v_64"]["gpu_mem_gb"] = csv_max(fit_dir, "perf/gpu_mem_gb")
    parts["fit_i2v_64"]["samples_per_s"] = csv_max(fit_dir, "perf/samples_per_s")
    parts["plan"] = planning.result() if planning else {"skipped": "bench plan is tested on the CPU by "
                                                                  "tests/benchmarks/test_plan.py"}
    predicted = next((r for r in bench_rows(out, "plan", "gpu-check") if r["strategy"] == "ddp" and r["ckpt"]), None)
    if predicted:  # one device: no DDP buckets; the plan's ddp row at this batch, less them
        parts["fit_i2v_64"]["plan_mem_gib"] = predicted["mem_gib"] - predicted["detail"]["static_gib"]["ddp_buckets"]

    unet = [f"bench.batch_size={z['batch']}", f"bench.num_frames={z['frames']}", f"bench.height={z['size']}",
            f"bench.width={z['size']}", f"bench.unet.model_channels={z['unet_width']}",
            "bench.unet.channel_mult=[1,2,3,4]",
            "bench.unet.attention_levels=[1,2,3]", "bench.context_len=333", "bench.unet.context_dim=1024",
            "bench.unet.pooled_dim=1024", "bench.unet.head_dim=64" if mode == "gpu" else "bench.unet.head_dim=16",
            "bench.unet.norm_groups=32" if mode == "gpu" else "bench.unet.norm_groups=8",
            f"bench.iters={z['unet_iters']}", "bench.compare_diffusers=false", f"out_dir={out}"]
    # On the CPU the two bench launches would only repeat tests/commands/test_bench.py and test_bench_step.py (the
    # same commands at tiny sizes); the GPU run keeps them for their figures.
    for compiled in ((False, True) if mode == "gpu" else ()):
        name = f"bench_unet{'_compile' if compiled else ''}"
        parts[name] = launch(name, [*PY, "bench", "unet", *unet, f"bench.compile={str(compiled).lower()}",
                                    f"run_name={name}"], 240, logs)
        parts[name]["rows"] = bench_rows(out, "unet", name)
    if mode == "cpu":
        parts["bench_unet"] = {"skipped": "the CPU check is tests/commands/test_bench.py (same command)"}
        parts["bench_unet_compile"] = {"skipped": "needs CUDA (inductor on a CPU takes minutes)"}

    if mode == "gpu":
        step = [f"bench.batch_size={z['batch']}", f"bench.num_frames={z['frames']}", f"bench.height={z['size']}",
                f"bench.width={z['size']}", "bench.steps=30", "bench.warmup=5", "bench.scaling=false"]
        parts["bench_step"] = launch("bench_step", [*PY, "bench", "step", *step, f"out_dir={out}", "run_name=step"],
                                     240, logs)
        parts["bench_step"]["rows"] = bench_rows(out, "step", "step")
    else:
        parts["bench_step"] = {"skipped": "the CPU check is tests/commands/test_bench_step.py (same command)"}

    if mode == "gpu":
        fsdp_dir = runs / "fit-fsdp"
        parts["fit_fsdp"] = launch("fit_fsdp", [*PY, "fit", *base, "trainer=fsdp", f"trainer.devices={gpus}",
                                                "model.unet.gradient_checkpointing=false", "trainer.max_steps=3",
                                                f"run_dir={fsdp_dir}"], 300, logs)
        parts["fit_fsdp"]["gpu_mem_gb"] = csv_max(fsdp_dir, "perf/gpu_mem_gb")
    else:
        parts["fit_fsdp"] = {"skipped": "needs CUDA (NCCL, bf16 FSDP)"}

    # the Wan DiT (4 blocks of width 512, 17x256x256 clips -> 5x32x32 latents: 1280 tokens) under trainer=fsdp2 at
    # world size 1 over NCCL: FSDP2 units, per-block checkpointing and torch.compile, peak memory against bench plan,
    # MFU from perf/mfu; sequence parallelism beyond one GPU is CPU-verified (tests/parallel, tests/training/
    # test_fsdp2_strategy.py), which the report says
    if mode == "gpu" or os.environ.get("WANTRAIN_GPU_CHECK_DIT_ON_CPU"):  # the latter: trying this part on a CPU
        wan = data_dir / "encoders" / "tiny-wan-i2v"  # the tiny umT5 / CLIP / VAE; the transformer is built wider
        launch("tiny_wan", [sys.executable, "-c", f"from wantrain.encoders.tiny_wan import build_tiny_wan; "
                                                  f"build_tiny_wan({str(wan)!r})"], 120, logs)
        dit = ["+experiment=wan_tiny_i2v", *common, "init_from=null", "model.net.path=null",
               f"model.text_encoder.path={wan}", f"model.image_encoder.path={wan}", f"model.vae.path={wan}/vae",
               "+model.net.config={patch_size:[1,2,2],num_attention_heads:4,attention_head_dim:128,in_channels:12,"
               "out_channels:4,text_dim:32,freq_dim:256,ffn_dim:2048,num_layers:4,cross_attn_norm:true,"
               "qk_norm:rms_norm_across_heads,eps:1e-6,image_dim:32,added_kv_proj_dim:512,rope_max_seq_len:1024}",
               "data.num_frames=17", "data.resolution=256", "data.batch_size=2", "data.num_workers=2",
               f"data.train_shards={shards}/train-00000.tar", f"data.val_shards={shards}/val-00000.tar",
               "trainer.limit_val_batches=0", "model.sampling.every_n_steps=0", "logger=csv",
               "trainer.log_every_n_steps=1"]
        dit_plan = launch("dit_fsdp2_plan", [*PY, "bench", "plan", *[o for o in dit if not o.startswith(
            ("paths.", "data.train_shards", "data.val_shards"))], "bench.gpus=1", f"out_dir={out}",
            "run_name=dit"], 300, logs)
        dit_dir = runs / "fit-dit-fsdp2"
        on_cpu = ["trainer.accelerator=cpu", "trainer.strategy.param_dtype=float32", "trainer.strategy.compile=false",
                  "data.num_frames=5", "data.resolution=32"] if mode == "cpu" else []
        parts["fit_dit_fsdp2"] = launch("fit_dit_fsdp2", [*PY, "fit", *dit, "trainer=fsdp2", "trainer.devices=1",
                                                          "trainer.strategy.compile=true", "trainer.max_steps=8",
                                                          f"run_dir={dit_dir}", *on_cpu], 420, logs)
        planned = next((r for r in bench_rows(out, "plan", "dit") if r["strategy"].startswith("fsdp")), None)
        parts["fit_dit_fsdp2"].update(gpu_mem_gb=csv_max(dit_dir, "perf/gpu_mem_gb"),
                                      mfu=csv_max(dit_dir, "perf/mfu"), plan_rc=dit_plan.get("rc"),
                                      plan_mem_gib=planned["mem_gib"] if planned else None,
                                      sequence_parallel="CPU-verified only (one GPU here)")
    else:
        parts["fit_dit_fsdp2"] = {"skipped": "needs CUDA (NCCL, compile); the CPU checks are tests/parallel/"
                                             "test_equality.py and tests/training/test_fsdp2_strategy.py"}

    sr_dir = runs / "fit-sr1"
    sr_data = [o for o in data if not o.startswith(("data.resolution", "data.batch_size", "data.fps"))]
    sr_size = ["data.resolution=128", "data.batch_size=2"] if mode == "gpu" else [
        "data.resolution=32", "model.base_size=16", "model.generator.channels=8", "model.generator.num_blocks=1",
        "model.discriminator.channels=8", "data.batch_size=1"]
    parts["fit_sr_stage1"] = launch("fit_sr_stage1", [*PY, "fit", "+experiment=sr_stage1", *common, *sr_data,
                                                      *sr_size, *trainer, f"run_dir={sr_dir}",
                                                      "model.content_loss.allow_random_weights=true"], 300, logs)
    sample_out = out / "sample.mp4"
    parts["sample_cascade"] = launch("sample_cascade", [
        *PY, "sample", f"base_ckpt={fit_dir}/checkpoints/last.ckpt", f"sr_ckpts=[{sr_dir}/export/sr_stage1]",
        "prompt=a red ball rolls", f"image={first_frame(out / 'first.png')}", f"out={sample_out}", "steps=4",
        "tile=16" if mode == "cpu" else "tile=64",
        "precision=bf16" if mode == "gpu" else "precision=fp32", *common], 240, logs)
    parts["sample_cascade"]["mp4_bytes"] = sample_out.stat().st_size if sample_out.exists() else None

    sr4_dir = runs / "fit-sr4"
    sr4_data = [o for o in sr_data if not o.startswith("data.num_frames")]  # the stage's own 8 frames
    parts["fit_sr_stage4"] = launch("fit_sr_stage4", [*PY, "fit", "+experiment=sr_stage4", *common, *sr4_data,
                                                      *(["data.resolution=1024"] if mode == "gpu" else []), *z["sr4"],
                                                      *trainer, "trainer.max_steps=3", f"run_dir={sr4_dir}",
                                                      "model.content_loss.allow_random_weights=true"], 300, logs)
    parts["fit_sr_stage4"]["gpu_mem_gb"] = csv_max(sr4_dir, "perf/gpu_mem_gb")

    failed = [n for n, p in parts.items() if p.get("rc") not in (0, None)]
    report["failed"] = failed
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"report": str(out / "report.json"), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
