"""`bench plan`: the traced (FakeTensor) peak memory and FLOPs of a training step against real CPU runs, and the
planner's rows (buckets, strategies, checkpointing, largest batch, samples/s) from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from wantrain.benchmarks import plan
from wantrain.benchmarks.plan_trace import trace_step
from wantrain.benchmarks.plan_validate import builder
from wantrain.commands.argv import plan_overrides

MIB = 2**20
MID = ["model.unet.model_channels=64", "model.unet.norm_groups=32"]
CASES = [  # tiny: i2v_tiny at 4x16x16; mid: 4x the UNet's width at 8x32x32 (~600 MB of activations), +/- checkpointing
    {"overrides": [], "frames": 4, "height": 16, "width": 16, "batch": 2, "checkpointing": False},
    {"overrides": MID, "frames": 8, "height": 32, "width": 32, "batch": 2, "checkpointing": False},
    {"overrides": MID, "frames": 8, "height": 32, "width": 32, "batch": 2, "checkpointing": True},
]


def test_plan_overrides_travel_as_bench_overrides() -> None:
    """Training overrides go to bench.overrides (quoted for Hydra); bench.*, out_dir and Hydra flags stay."""
    got = plan_overrides(["+experiment=i2v_64", "bench.gpu=A100", "trainer=fsdp", "out_dir=/x", "a.b='q'"])
    assert got == ["bench.gpu=A100", "out_dir=/x",
                   "bench.overrides=['+experiment=i2v_64','trainer=fsdp','a.b=\\'q\\'']"]
    assert plan_overrides(["bench.mfu=0.5"]) == ["bench.mfu=0.5"]


@pytest.mark.slow
def test_traced_peak_and_flops_match_real_cpu_steps() -> None:
    """Predicted (FakeTensor trace) vs measured (resident-set high-water mark of the same step on real tensors, in a
    fresh process) peak memory, and FLOPs. Measured here (traced vs measured): tiny 40.9 vs 39.5 MiB, mid 615.8 vs
    613.6 MiB, mid checkpointed 157.7 vs 177.1 MiB. Tolerance: the trace may exceed the measurement by 5% + 8 MiB
    (small allocations come from glibc's heap, whose reuse RSS cannot see; pages) and fall short of it by 15% + 8 MiB:
    kernels' internal scratch (e.g. conv3d's im2col columns during a checkpointed block's backward, cuDNN workspaces
    on GPU) is no tensor the dispatcher sees; the planner keeps a reserve for it (bench.reserve + 1 GB). FLOPs: the
    same count."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-m", "wantrain.benchmarks.plan_validate", json.dumps(CASES)], env=env,
                         capture_output=True, text=True, timeout=500, check=True).stdout
    results = json.loads(out.strip().splitlines()[-1])
    for r in results:
        traced, measured = r["traced_bytes"], r["measured_bytes"]
        slack = (r["overrides"], r["checkpointing"], traced / MIB, measured / MIB)
        assert measured * 0.85 - 8 * MIB <= traced <= measured * 1.05 + 8 * MIB, slack
        assert r["traced_flops"] == r["measured_flops"] > 0
    tiny, mid, mid_ckpt = results
    assert mid["measured_bytes"] > 8 * tiny["measured_bytes"]  # the mid case is where activations dominate
    assert mid_ckpt["measured_bytes"] < 0.5 * mid["measured_bytes"]  # checkpointing: the trace saw it too
    assert mid_ckpt["measured_flops"] > mid["measured_flops"]  # ... paid for by recomputing the forward


@pytest.mark.slow
def test_traced_step_is_linear_in_batch() -> None:
    """FLOPs per sample do not depend on the batch; memory = fixed + per-sample x batch (what the planner fits)."""
    build = builder({**CASES[0], "frames": 4, "height": 8, "width": 8})
    one, two, three = (trace_step(build, b, "32-true") for b in (1, 2, 3))
    assert two.train_flops == 2 * one.train_flops and three.train_flops == 3 * one.train_flops
    assert two.forward_flops == 2 * one.forward_flops
    fixed, per_sample = plan.fit_line(one, two)
    assert per_sample > 0 and abs(fixed + 3 * per_sample - three.peak_bytes) <= 0.02 * three.peak_bytes


@pytest.mark.slow
def test_bench_plan_cli_buckets(wantrain_main, tmp_path: Path) -> None:
    """`bench plan` on i2v_tiny with two buckets: a row per bucket x (ddp, ddp + checkpointing, fsdp), a JSON."""
    code = wantrain_main(["bench", "plan", "data.buckets=[[16,16,4,2],[16,32,4,1]]", "bench.gpus=4",
                          f"out_dir={tmp_path}", "run_name=t"], tmp_path)
    assert code == 0
    rows = json.loads((tmp_path / "plan-t.json").read_text())["rows"]
    assert [(r["shape"], r["strategy"], r["ckpt"]) for r in rows] == [
        (s, st, c) for s in ("4x16x16", "4x16x32") for st, c in (("ddp", False), ("ddp", True), ("fsdp/4", True))]
    small, big = rows[0], rows[3]
    assert big["train_gflop_per_sample"] == pytest.approx(2 * small["train_gflop_per_sample"], rel=0.05)
    assert big["act_gib_per_sample"] > small["act_gib_per_sample"]
    for r in rows:
        assert r["mem_gib"] == pytest.approx(r["fixed_gib"] + r["batch"] * r["act_gib_per_sample"], abs=0.02)
        assert 0 < r["max_batch_24gb"] <= r["max_batch_80gb"] <= r["max_batch_141gb"]
        peak = 989.0  # H100 bf16 dense
        assert r["samples_s_H100"] == pytest.approx(0.35 * peak * 1e3 / r["train_gflop_per_sample"], rel=0.01)
    assert rows[1]["act_gib_per_sample"] < rows[0]["act_gib_per_sample"]  # checkpointing saves activations
    assert rows[1]["recompute_gflop_per_sample"] > 0


@pytest.mark.slow
def test_plan_upsampler_stage() -> None:
    """An upsampler stage (sr_tiny): G + D trainable, the frozen VGG counted, EMA of G, HR crop rows (DDP only)."""
    cfg = OmegaConf.load(Path(plan.__file__).parents[2] / "conf" / "bench" / "plan.yaml")
    cfg.overrides = ["+experiment=sr_tiny", "data.num_frames=2", "model.crop_size=16"]
    rows = plan.run(cfg)
    strategies = ("ddp", "ddp")
    assert [(r["shape"], r["strategy"]) for r in rows] == [("2x16x16 HR crop", s) for s in strategies]
    assert rows[0]["frozen_M"] > 1  # VGG19's convolutions up to the last feature layer the loss uses
    assert rows[0]["detail"]["static_gib"]["loss_nets"] > 0


@pytest.mark.slow
def test_plan_wan_backbone_with_lora_over_a_bf16_base(wan_dir) -> None:
    """The Wan backbone from its folder's architecture, LoRA on a bf16 base (built on FakeTensors: peft's moves are
    skipped, adapters stay float32 as in training): trainable = the adapters, the frozen base counted at 2 bytes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from wantrain.benchmarks.plan_build import diffusion_nets
    from wantrain.benchmarks.plan_trace import fake_safe_conversions
    from wantrain.nets.lora import add_lora, lora_settings
    from wantrain.nets.wan import WanDenoiser

    cfg = OmegaConf.load(Path(plan.__file__).parents[2] / "conf" / "bench" / "plan.yaml")
    base = ["+experiment=wan_tiny_i2v", f"init_from={wan_dir}", "model.lora.rank=4"]
    cfg.overrides = [*base, "model.net.dtype=bfloat16"]
    rows = plan.run(cfg)
    assert [r["shape"] for r in rows] == ["9x32x32 -> 4x3x4x4 latent"] * 3 and rows[0]["trainable_M"] > 0
    # issue 28's memory options: sequence parallelism, CPU offload, 8-bit AdamW, float8 storage of the frozen base
    cfg.update({"sequence_parallel": 2, "cpu_offload": True, "optimizer_bytes": 2})
    cfg.overrides = [*base, "model.net.dtype=bfloat16", "+model.net.storage_dtype=float8_e4m3fn"]
    low = plan.run(cfg)
    assert [r["strategy"] for r in low] == ["ddp", "ddp", "fsdp/8 sp2", "fsdp/8 sp2+offload"]
    fsdp, sp, offload = rows[2], low[2], low[3]
    assert sp["act_gib_per_sample"] == pytest.approx(fsdp["act_gib_per_sample"] / 2, abs=2e-3)
    assert {"weights", "optimizer", "ema"}.isdisjoint(offload["detail"]["static_gib"])
    assert offload["mem_gib"] <= sp["mem_gib"]
    counts = {}
    for dtype in ("bfloat16", "float32"):
        cfg.overrides = [*base, f"model.net.dtype={dtype}"]
        with FakeTensorMode(allow_non_fake_inputs=True), fake_safe_conversions():
            model = diffusion_nets(plan.plan_config(cfg).model)
            adapters = {p.dtype for n, p in model.named_parameters() if p.requires_grad}
            counts[dtype] = plan.count({"model": model}, None)
        assert adapters == {torch.float32}
    frozen = counts["float32"]["model"] - counts["float32"]["trainable"]
    saved = counts["float32"]["weight_bytes"] - counts["bfloat16"]["weight_bytes"]
    assert counts["bfloat16"]["trainable"] == counts["float32"]["trainable"] > 0
    assert saved > 1.5 * frozen  # 2 bytes less per frozen weight, but the fp32-kept norms and time embedding (1.9 here)
    cfg.overrides = [*base, "model.net.dtype=bfloat16", "+model.net.storage_dtype=float8_e4m3fn"]
    with FakeTensorMode(allow_non_fake_inputs=True), fake_safe_conversions():
        fp8 = plan.count({"model": diffusion_nets(plan.plan_config(cfg).model)}, plan.plan_config(cfg).model)
    saved = counts["bfloat16"]["weight_bytes"] - fp8["weight_bytes"]  # 1 byte less per weight diffusers casts
    net = WanDenoiser(path=wan_dir, dtype="bfloat16", storage_dtype="float8_e4m3fn")  # the real casting
    add_lora(net, lora_settings(rank=4, target_modules=list(plan.plan_config(cfg).model.lora.target_modules)))
    assert saved == sum(p.numel() for p in net.parameters() if p.dtype == torch.float8_e4m3fn) > 0.3 * frozen


def test_static_memory_of_the_options_at_14b_scale() -> None:
    """Per-GPU bytes outside the step for a 14B LoRA (153 M trainable, bf16 base): AdamW vs 8-bit AdamW states,
    FSDP over 8 GPUs, and CPU offload (only the two unsharded units stay; the shards move to the host)."""
    counts = {"trainable": 153_000_000, "model": 16_500_000_000, "ema": 16_500_000_000, "loss_nets": 0,
              "largest_unit": 400_000_000, "weight_bytes": 2 * 16_347_000_000 + 4 * 153_000_000}
    ddp, ddp8 = plan.static_bytes(counts, "ddp", 8), plan.static_bytes(counts, "ddp", 8, optimizer_bytes=2)
    assert ddp["optimizer"] == 8 * 153e6 and ddp8["optimizer"] == 2 * 153e6
    fsdp, offload = plan.static_bytes(counts, "fsdp", 8), plan.static_bytes(counts, "offload", 8)
    assert fsdp["weights"] == counts["weight_bytes"] / 8 and fsdp["fsdp_unsharded"] == offload["fsdp_unsharded"]
    assert sum(offload.values()) == 2 * 2 * 400e6  # two bf16 units on the GPU
    host = plan.host_bytes(counts, 8, 8.0)
    assert host == pytest.approx((2 * counts["weight_bytes"] + 12 * 153e6) / 8)  # weights + EMA + grads + AdamW


WAN_MID = ["+experiment=wan_tiny_i2v", "model.net.path=null",
           "+model.net.config={patch_size:[1,2,2],num_attention_heads:4,attention_head_dim:32,in_channels:12,"
           "out_channels:4,text_dim:32,freq_dim:64,ffn_dim:512,num_layers:4,cross_attn_norm:true,"
           "qk_norm:rms_norm_across_heads,eps:1e-6,image_dim:32,added_kv_proj_dim:128,rope_max_seq_len:1024}"]


@pytest.mark.slow
def test_traced_wan_step_matches_a_real_cpu_step(wan_dir) -> None:
    """The Wan backbone (4 blocks of width 128, 17x128x128 clips -> 5x16x16 latents, 320 tokens) traced vs run for
    real, +- checkpointing. Measured (traced vs measured): 58.8 vs 58.2 MB, checkpointed 21.8 vs 21.5 MB; FLOPs
    equal. Tolerance as test_traced_peak_and_flops_match_real_cpu_steps."""
    cases = [{"overrides": [*WAN_MID, f"init_from={wan_dir}"], "frames": 17, "height": 128, "width": 128,
              "batch": 2, "checkpointing": ckpt, "image_tokens": 17} for ckpt in (False, True)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-m", "wantrain.benchmarks.plan_validate", json.dumps(cases)], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    plain, checkpointed = json.loads(out.strip().splitlines()[-1])
    for r in (plain, checkpointed):
        traced, measured = r["traced_bytes"], r["measured_bytes"]
        assert measured * 0.85 - 8 * MIB <= traced <= measured * 1.05 + 8 * MIB, (traced / MIB, measured / MIB)
        assert r["traced_flops"] == r["measured_flops"] > 0
    assert checkpointed["measured_bytes"] < 0.5 * plain["measured_bytes"]
    assert checkpointed["measured_flops"] > plain["measured_flops"]
