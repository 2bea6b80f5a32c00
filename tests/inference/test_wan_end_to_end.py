"""A Wan fine-tune end to end, as a user runs it: `fit +experiment=wan_tiny_i2v` from a diffusers folder with LoRA
(the load report printed), resumed exactly from a mid-run checkpoint, exported as a diffusers pipeline folder and as
LoRA files in diffusers' and ComfyUI's names, and loaded back in diffusers, which samples the same clip."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_wan_diffusers import PROMPT, SCALE, SEED, STEPS, diffusers_latents, first_frame

from wantrain.inference.base import BaseModel
from wantrain.inference.checkpoints import read_saved

RUN = ["+experiment=wan_tiny_i2v", "model.lora.rank=4", "model.lora.alpha=8", "trainer.max_steps=4",
       "data.batch_size=2", "data.samples_per_epoch=8", "trainer.limit_val_batches=1", "model.sampling.every_n_steps=0",
       "logger=csv", "print_config=false", "callbacks.model_checkpoint.every_n_train_steps=2",
       "callbacks.model_checkpoint.save_top_k=-1", f"model.sampling.num_steps={STEPS}",
       f"model.sampling.text_scale={SCALE}"]


@pytest.mark.slow
def test_wan_lora_fit_resumes_exactly_and_goes_back_to_diffusers(wan_dir, data_dir, tmp_path, wantrain_main,
                                                                  capsys) -> None:
    from diffusers import WanImageToVideoPipeline

    args = [*RUN, f"paths.data_dir={data_dir}", f"paths.runs_dir={tmp_path / 'runs'}", f"init_from={wan_dir}"]
    assert wantrain_main(["fit", *args, "run_name=whole"], tmp_path) == 0
    report = capsys.readouterr().out
    assert f"init_from {wan_dir}/transformer (diffusers weights)" in report and "missing 0, unexpected 0" in report

    resumed = tmp_path / "runs" / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(tmp_path / "runs" / "whole" / "checkpoints" / "step0000002.ckpt", resumed)
    assert wantrain_main(["fit", *args, "run_name=resumed"], tmp_path) == 0
    a, b = (torch.load(tmp_path / "runs" / n / "checkpoints" / "last.ckpt", weights_only=True)
            for n in ("whole", "resumed"))
    assert a["global_step"] == b["global_step"] == 4
    adapters = [k for k in a["state_dict"] if k.startswith("model.") and ".lora_" in k]
    assert adapters and all(k.startswith("model.net.transformer.blocks.") for k in adapters)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key

    out = tmp_path / "export"
    assert wantrain_main(["sample", f"base_ckpt={tmp_path / 'runs' / 'whole'}", f"export={out}", "format=diffusers",
                          "export_lora=true"], tmp_path) == 0
    saved = read_saved(tmp_path / "runs" / "whole")  # EMA weights, LoRA merged
    trained = {k[len("net.transformer."):]: v for k, v in saved.state.items()}
    pipe = WanImageToVideoPipeline.from_pretrained(str(out))
    for key, value in pipe.transformer.state_dict().items():
        assert torch.equal(value, trained[key]), key

    base = BaseModel.from_saved(saved)
    pil, image = first_frame()
    ours = base.model.sample_from_seeds(base.conditions(image, [PROMPT], 9), [SEED], clip_sample=False,
                                        **base.settings())
    torch.testing.assert_close(ours, diffusers_latents(pipe, pil), rtol=0, atol=1e-4)

    diffusers_file = out / "lora" / "pytorch_lora_weights.safetensors"
    comfy_file = out / "lora" / "wan_lora_comfyui.safetensors"
    assert all(k.startswith("transformer.blocks.") for k in load_file(diffusers_file))
    comfy = load_file(comfy_file)
    assert all(k.startswith("diffusion_model.blocks.") and k.endswith((".lora_down.weight", ".lora_up.weight",
                                                                        ".alpha")) for k in comfy)
    assert {k.split(".")[3] for k in comfy} == {"self_attn", "cross_attn"}
    for lora in (diffusers_file, comfy_file):  # the released folder + the LoRA = the exported fine-tune
        tuned = WanImageToVideoPipeline.from_pretrained(str(wan_dir))
        tuned.load_lora_weights(str(lora))
        tuned.fuse_lora()
        tuned.unload_lora_weights()
        fused = tuned.transformer.state_dict()
        worst = max((fused[k] - trained[k]).abs().max().item() for k in fused)
        assert worst < 1e-6, (lora.name, worst)


@pytest.mark.slow
def test_wan_trains_on_cached_states_and_latents(wan_dir, data_dir, tmp_path, wantrain_main) -> None:
    """`encode` with a Wan experiment caches umT5 states (unpadded; the backbone pads them to 512), CLIP states and
    latents from the folder's own encoders and VAE; `fit` then trains without them (as the full-size recipes do)."""
    common = ["+experiment=wan_tiny_i2v", f"paths.data_dir={data_dir}", f"init_from={wan_dir}",
              f"data.train_shards={data_dir}/synthetic/train-00000.tar", "data.val_shards=null"]
    out = tmp_path / "cached"
    assert wantrain_main(["encode", *common, f"out={out}"], tmp_path) == 0
    cached = [*common[:3], f"data.train_shards={out}/train-00000.tar", "data.val_shards=null",
              "model.conditioning=cached", "data.embeddings=[t5,dit,latent,first_latent]"]
    assert wantrain_main(["fit", *cached, f"run_dir={tmp_path / 'run'}", "trainer.max_steps=2", "logger=csv",
                          "print_config=false"], tmp_path) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
