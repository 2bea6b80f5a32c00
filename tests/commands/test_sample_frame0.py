"""`sample frame0=keep|regenerate guidance_ramp=... guidance_rescale=...` on the tiny trained base model (the stages
that test_sample_cmd trains once per session): keep writes the input frame as frame 0; the options are recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from in_process import run_main  # the in-process CLI
from PIL import Image
from test_sample_cmd import SAMPLE_FAST, frames_of, train_tiny_stages

from wantrain.inference.media import read_image


@pytest.mark.slow  # two tiny sample runs (plus the session's tiny stages, when test_sample_cmd did not train them)
def test_frame0_keep_writes_the_input_frame_and_the_ramp_is_recorded(data_dir, tmp_path_factory, tmp_path):
    stages = train_tiny_stages(data_dir, tmp_path_factory.getbasetemp() / "tiny-stages")
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[8:24, 4:20] = (220, 40, 30)
    image = tmp_path / "first.png"
    Image.fromarray(pixels).save(image)
    common = ["sample", f"base_ckpt={stages['base']}", f"image={image}", "prompt=a red square", "seed=1",
              "text_scale=3.0", *SAMPLE_FAST]
    runs = {"keep": ["frame0=keep", "guidance_ramp=1.0", "guidance_rescale=0.7"], "regenerate": []}
    first = {}
    for name, extra in runs.items():
        assert run_main([*common, f"out={tmp_path / name}.mp4", *extra], tmp_path) == 0
        first[name] = frames_of(tmp_path / f"{name}.mp4")[0].astype(np.float32)
    truth = (read_image(image, (32, 32)).permute(1, 2, 0).numpy() + 1) * 127.5
    keep_err, regen_err = (np.abs(first[k] - truth).mean() for k in ("keep", "regenerate"))
    assert keep_err < 6 and regen_err > 4 * keep_err, (keep_err, regen_err)  # H.264 (crf 18) aside, the input frame
    records = [json.loads(line) for p in sorted(tmp_path.glob("runs/sample/*/samples-rank0.jsonl"))
               for line in p.read_text().splitlines()]
    got = {(r["frame0"], r["guidance_ramp"], r["guidance_rescale"]) for r in records}
    assert got == {("keep", 1.0, 0.7), ("regenerate", None, 0.0)}
