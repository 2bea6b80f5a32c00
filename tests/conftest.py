"""Session fixtures shared by the command and training tests: the default data set and tiny encoders, built once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from in_process import run_main

REPO = Path(__file__).resolve().parents[1]
NOT_QUICK = ("slow", "ddp", "slurm", "gpu")


def pytest_configure(config: pytest.Config) -> None:
    """The third-party warnings the CLI silences (`wantrain/commands/quiet.py`, their one list) are ignored in tests
    too: appended to pyproject's `filterwarnings`, so they win over its earlier entries."""
    from wantrain.commands.quiet import pytest_filters

    for line in pytest_filters():
        config.addinivalue_line("filterwarnings", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tiers: every test without a `slow`/`ddp`/`slurm`/`gpu` marker is `quick` (`pytest -m quick`, the inner loop).
    Under pytest-xdist (`-n 2 --dist loadgroup`) the `slurm` tests share one worker: each holds both CPUs of the
    local cluster's one node, so two at once would queue behind each other and run out of their time limits."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in NOT_QUICK):
            item.add_marker(pytest.mark.quick)
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `paths.data_dir` with the default synthetic set, the tiny T5/DiT encoders and Wan VAE (as `fit` builds)."""
    from wantrain.data.synthetic import caption_corpus, write_synthetic_dataset
    from wantrain.encoders.tiny import build_tiny_dit, build_tiny_t5, build_tiny_wan_vae

    root = tmp_path_factory.mktemp("wantrain") / "data"
    write_synthetic_dataset(root / "synthetic")  # the defaults of conf/data/synthetic.yaml
    build_tiny_t5(root / "encoders" / "tiny-t5", caption_corpus())
    build_tiny_dit(root / "encoders" / "tiny-dit")
    build_tiny_wan_vae(root / "encoders" / "tiny-wan-vae")  # the latent experiments' VAE
    return root


@pytest.fixture(scope="session")
def wan_dir(data_dir: Path) -> Path:
    """The tiny random Wan2.1 I2V pipeline folder (Hub layout) where +experiment=wan_tiny_i2v looks for it."""
    from wantrain.encoders.tiny_wan import build_tiny_wan

    return build_tiny_wan(data_dir / "encoders" / "tiny-wan-i2v")


def run_wantrain(args: list[str], cwd: Path, timeout: float = 600, env: dict[str, str | None] | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    """Run `python -m wantrain ARGS` in a subprocess (as a user would), capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WANTRAIN_", "SLURM_"))}
    full_env.update({"PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"})
    for key, value in (env or {}).items():  # None unsets a variable
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([sys.executable, "-m", "wantrain", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def run_python_script(source: str, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Write `source` to CWD/script.py and run it in a fresh interpreter, capturing its output.

    DDP tests need this: Lightning relaunches ranks from sys.argv, which must be a script, not pytest.
    """
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANTRAIN_", "SLURM_"))}
    env.update({"PYTHONWARNINGS": "ignore", "WANDB_MODE": "disabled"})
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def wantrain_main():
    """The `run_main` function: the CLI's `main()` in-process (usable from module-scoped fixtures too)."""
    return run_main


@pytest.fixture
def python_script():
    """The `run_python_script` function, for tests that start DDP ranks from a script."""
    return run_python_script


@pytest.fixture
def wantrain_cli():
    """The `run_wantrain` function, for tests that drive the CLI."""
    return run_wantrain


def compose_config(*overrides: str, config_name: str = "config", root: Path | None = None):
    """Compose the real config tree as `python -m wantrain` would (for in-process tests)."""
    from hydra import compose, initialize_config_dir

    from wantrain.commands.launch import register_resolvers
    from wantrain.config_tree import config_dir

    register_resolvers()
    extra = [f"paths.root_dir={root}"] if root is not None else []
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*extra, *overrides])


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per test process: on 2 shared cores, 2 threads per op mostly wait on each other."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def compose():
    """The `compose_config` function, for tests that build objects from the real config tree."""
    return compose_config


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $TORCH_HOME holding a (random) VGG19 checkpoint in torchvision's layout, so real stages load 'weights'."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    from wantrain.losses.perceptual import VGG19_FILE

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    torch.save(state, folder / VGG19_FILE)
    return home


def _byte_level_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary for no merges: every byte symbol alone and word-final, plus the special tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


@pytest.fixture(scope="session")
def metric_nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random networks in the released layouts for the video-quality metrics: a CLIP folder (CLIPModel +
    CLIPProcessor, as openai/clip-vit-base-patch32), a DINO ViT folder (as facebook/dino-vitb16) and torchvision
    raft_small weights (.pth)."""
    import torch
    from torchvision.models.optical_flow import raft_small
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("metric_nets")
    torch.manual_seed(0)
    vocab = _byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, **special},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPModel(config).save_pretrained(root / "clip")
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(root / "clip")
    vit = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                    patch_size=8)
    ViTModel(vit, add_pooling_layer=False).save_pretrained(root / "dino")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "dino")
    torch.save(raft_small(weights=None, progress=False).state_dict(), root / "raft_small.pth")
    return {"clip": root / "clip", "dino": root / "dino", "raft": root / "raft_small.pth"}
