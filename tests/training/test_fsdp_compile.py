"""trainer=fsdp (sharded UNet blocks, activation checkpointing, EMA, full checkpoints that resume) on 2 CPU
processes, and callbacks.compile (a compiled fit whose checkpoint loads into an uncompiled module)."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from wantrain.commands import fit
from wantrain.errors import WantrainError
from wantrain.nets.fusion import ConditionFusion
from wantrain.nets.unet import SpatioTemporalUNet, UNetBlock
from wantrain.training.compile import CompileModules

FSDP_SCRIPT = """
import json, sys
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import FSDPStrategy


class CPUFSDPStrategy(FSDPStrategy):
    # Lightning refuses the exact FSDPStrategy class on CPU and gives FSDP no device (FSDP then wants an
    # accelerator); FSDP itself runs on CPU over gloo with device_id=cpu. Everything else is conf/trainer/fsdp.yaml.
    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        init = FSDP.__init__

        def cpu_init(fsdp, *args, device_id=None, **kwargs):
            init(fsdp, *args, device_id=torch.device("cpu"), **kwargs)

        FSDP.__init__ = cpu_init
        try:
            return super()._setup_model(model)
        finally:
            FSDP.__init__ = init


class Inspect(pl.Callback):
    def on_train_start(self, trainer, module):
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        units = [type(m.module).__name__ for m in trainer.strategy.model.modules() if isinstance(m, FSDP)]
        local = sum(p.numel() for p in module.unet.parameters())
        checkpointed = sum(isinstance(m, CheckpointWrapper) for m in module.unet.modules())
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}-step{trainer.global_step}.json", "w") as f:
            json.dump({"units": units, "local_unet_params": local, "checkpointed": checkpointed,
                       "world": trainer.world_size, "noise": torch.rand(4).tolist()}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    from hydra import compose, initialize_config_dir
    from wantrain.commands import fit
    from wantrain.commands.launch import prepare_launch
    from wantrain.config_tree import config_dir

    prepare_launch()
    build = fit.build_trainer
    fit.build_trainer = lambda cfg, extra_callbacks=None, **kw: build(cfg, [*(extra_callbacks or []), Inspect()], **kw)
    root, data_dir = sys.argv[1], sys.argv[2]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"paths.root_dir={root}", f"paths.data_dir={data_dir}", "trainer=fsdp", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.num_nodes=1", "trainer.precision=32-true",
            "trainer.strategy._target_=__main__.CPUFSDPStrategy", "+trainer.strategy.process_group_backend=gloo",
            "logger=csv", "print_config=false", "data.batch_size=2", "data.samples_per_epoch=8",
            "data.num_workers=0", "trainer.limit_val_batches=1", "data.num_frames=4", "data.resolution=16",
            "model.unet.model_channels=16", "model.sampling.every_n_steps=2", "model.sampling.num_steps=2",
            "model.ema_decay=0", "trainer.max_steps=3", "run_name=fsdp"])
    fit.run(cfg)
    cfg.trainer.max_steps = 5
    fit.run(cfg)  # the same run again: ckpt_path=auto resumes from its last.ckpt
"""


def test_fsdp_config_composes_the_strategy(compose, tmp_path):
    cfg = compose("trainer=fsdp", root=tmp_path)
    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy).__name__ == "FSDPStrategy" and strategy._state_dict_type == "full"
    policy = strategy.kwargs["auto_wrap_policy"]
    assert set(policy._module_classes) == {UNetBlock, SpatioTemporalUNet, ConditionFusion}
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.gradient_clip_val is None


@pytest.mark.ddp
@pytest.mark.slow
def test_fsdp_two_cpu_processes_shard_checkpoint_ema_and_resume(python_script, data_dir, tmp_path):
    proc = python_script(FSDP_SCRIPT, tmp_path, str(tmp_path), str(data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, resumed = (json.loads((tmp_path / f"rank0-step{s}.json").read_text()) for s in (0, 3))
    assert first["noise"] != json.loads((tmp_path / "rank1-step0.json").read_text())["noise"]  # ranks draw apart
    first.pop("noise"), resumed.pop("noise")
    assert first["world"] == 2 and resumed == first
    assert first["units"].count("UNetBlock") == 2 * first["checkpointed"] > 0  # blocks of UNet + EMA copy
    assert first["units"].count("SpatioTemporalUNet") == first["units"].count("ConditionFusion") == 2
    ckpt = torch.load(tmp_path / "runs" / "fsdp" / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    assert ckpt["global_step"] == 5 and not [k for k in state if "_fsdp" in k or "checkpoint_wrapped" in k]
    full = sum(v.numel() for k, v in state.items() if k.startswith("model.unet."))
    assert first["local_unet_params"] < 0.6 * full  # sharded: each rank holds about half of the UNet
    ema = {k: state["ema.module." + k.removeprefix("model.")] for k in state if k.startswith("model.")}
    for key, value in ema.items():  # decay 0: the EMA is the weights, shard by shard in the right place
        assert torch.equal(value, state[key]), key
    assert len(ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["ranks"]) == 2  # data position per rank


def test_compiled_fit_checkpoint_loads_into_an_uncompiled_module(compose, data_dir, tmp_path):
    graphs = []

    def counting(gm, example_inputs):  # a torch.compile backend: records the graph, runs it eagerly
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch._dynamo.register_backend(counting, name="wantrain_test_counting")
    cfg = compose("+experiment=sr_tiny", f"paths.data_dir={data_dir}", "logger=csv", "print_config=false",
                  "data.num_workers=0", "data.num_frames=2", "data.resolution=32", "data.batch_size=2",
                  "data.samples_per_epoch=8", "model.crop_size=16", "model.gan.warmup_batches=1",
                  "model.generator.channels=8", "model.generator.num_blocks=1", "model.discriminator.channels=8",
                  "model.validation.every_n_steps=0", "trainer.max_steps=2", "trainer.limit_val_batches=0",
                  "callbacks.compile.enabled=true", "callbacks.compile.backend=wantrain_test_counting",
                  "run_name=compiled", root=tmp_path)
    fit.run(cfg)
    assert graphs  # the generator really ran through torch.compile
    ckpt = torch.load(tmp_path / "runs" / "compiled" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and not [k for k in ckpt["state_dict"] if "_orig_mod" in k]
    plain = instantiate(cfg.model)
    plain.load_state_dict(ckpt["state_dict"])  # strict: same keys as an uncompiled module
    assert torch.equal(plain.generator.conv_in.weight, ckpt["state_dict"]["generator.conv_in.weight"])
    with pytest.raises(WantrainError, match="has none of them"):
        CompileModules(enabled=True, modules=["no_such_net"]).setup(pl.Trainer(accelerator="cpu", logger=False),
                                                                    plain, "fit")
