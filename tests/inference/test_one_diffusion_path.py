"""fit's validation samples, `wantrain sample` from the checkpoint, and `sample` from its export give the same clip
for the same seed: all three run `VideoDiffusion.sample_from_seeds` on the same weights."""

from __future__ import annotations

import av
import numpy as np
import torch
from PIL import Image

from wantrain.inference.media import read_image
from wantrain.io.mp4 import write_mp4

PROMPT = "a red square moving right"


def frames_of(path) -> np.ndarray:
    """Decoded (T, H, W, 3) uint8 frames of an mp4."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_validation_sample_command_and_export_give_one_clip(module_and_ckpt, wantrain_main, tmp_path):
    module, ckpt = module_and_ckpt
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[8:20, 4:16] = (220, 40, 30)
    Image.fromarray(pixels).save(tmp_path / "first.png")
    image = read_image(tmp_path / "first.png", (32, 32))[None]  # what `sample` feeds the model

    # fit: validation sampling (EMA weights, model.sampling settings, clip i from seed `seed + i`)
    validation = module.generate({"video": torch.zeros(1, 3, 8, 32, 32), "image": image, "caption": [PROMPT]}, seed=5)

    common = [f"image={tmp_path / 'first.png'}", f"prompt={PROMPT}", "seed=5"]
    assert wantrain_main(["sample", f"base_ckpt={ckpt}", *common, f"out={tmp_path / 'ckpt.mp4'}"], tmp_path) == 0
    assert wantrain_main(["sample", f"base_ckpt={ckpt}", f"export={tmp_path / 'export'}"], tmp_path) == 0
    assert wantrain_main(["sample", f"base_ckpt={tmp_path / 'export'}", *common, f"out={tmp_path / 'export.mp4'}"],
                         tmp_path) == 0

    from_ckpt, from_export = frames_of(tmp_path / "ckpt.mp4"), frames_of(tmp_path / "export.mp4")
    assert from_ckpt.shape == (8, 32, 32, 3) and from_ckpt.std() > 1
    np.testing.assert_array_equal(from_ckpt, from_export)
    # the validation clip, encoded by the same mp4 writer, decodes to the same frames
    write_mp4(validation[0], tmp_path / "validation.mp4", fps=8, crf=18)
    np.testing.assert_array_equal(frames_of(tmp_path / "validation.mp4"), from_ckpt)
