#!/usr/bin/env bash
# One-shot GPU acceptance run (< 8 min on one GPU): bench plan vs measured memory, a bf16-mixed fit of i2v_64 at full
# width, bench unet with/without torch.compile, bench step on CUDA, FSDP bf16 on the GPUs present, an upsampler stage
# fit + a bf16 sample through the cascade with tiling, an sr_stage4 step. One JSON report: OUT/report.json
# (default runs/gpu-check/), per-part logs in OUT/logs/. Exit 1 when a part failed.
#   scripts/gpu-check.sh [--out DIR] [--cpu]     # --cpu: the same launches at tiny sizes (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
exec "$PYTHON" scripts/gpu_check.py "$@"
