"""The trained networks of a composed training config, and one training step of them on random inputs of a data
shape, for `bench plan` to trace (see plan_trace.py): the diffusion stage (UNet + fusion + objective, the real
`VideoDiffusion.loss`) and an upsampler stage (G step: content + adversarial loss; D step: real vs fake)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

Autocast = Callable[[], AbstractContextManager]
StepFns = tuple[Callable[[], None], Callable[[], Any], dict[str, nn.Module]]


def is_upsampler(model_cfg: DictConfig) -> bool:
    """Whether the model config is an upsampler stage (else the video diffusion stage)."""
    return "generator" in model_cfg


def diffusion_nets(model_cfg: DictConfig, checkpointing: bool | None = None) -> nn.Module:
    """`VideoDiffusion` (UNet + fusion + objective) as the module builds it, LoRA and trainable groups applied."""
    from wantrain.diffusion.model import VideoDiffusion
    from wantrain.nets.lora import add_lora, lora_settings
    from wantrain.nets.trainable import set_trainable

    ckpt_kw = {} if checkpointing is None else {"gradient_checkpointing": checkpointing}
    objective = instantiate(model_cfg.flow if model_cfg.get("objective", "ddpm") == "flow" else model_cfg.schedule)
    if model_cfg.get("net") is not None:  # a backbone from its architecture alone: no weights are read
        node = OmegaConf.to_container(model_cfg.net, resolve=True)
        net = instantiate({**node, "path": None, "config": backbone_architecture(node), **ckpt_kw})
        model = VideoDiffusion(None, None, objective, net=net)
    else:
        model = VideoDiffusion(instantiate(model_cfg.unet, **ckpt_kw), instantiate(model_cfg.fusion), objective)
    lora = OmegaConf.to_container(model_cfg.get("lora") or {}, resolve=True)
    groups = model_cfg.get("trainable")
    if lora and lora.get("rank") is not None:
        add_lora(model.denoiser, lora_settings(**lora))
        groups = groups if groups is not None else ["lora"]
    set_trainable(model, None if groups is None else [str(g) for g in groups])
    return model.train()


def backbone_architecture(node: dict[str, Any]) -> dict[str, Any]:
    """A backbone node's architecture: its `config`, else its folder's config.json (`path`: init_from), else the
    released architecture it names; one line when none is known."""
    from wantrain.errors import WantrainError
    from wantrain.nets.pretrained import read_config
    from wantrain.nets.wan_architectures import released_architecture

    if node.get("config"):
        return dict(node["config"])
    if node.get("path"):
        return read_config(node["path"], node.get("subfolder") or "transformer")
    if node.get("architecture"):
        return released_architecture(str(node["architecture"]))
    raise WantrainError("bench plan of a model.net backbone needs its architecture: init_from=DIR (a diffusers folder) "
                        "or model.net.architecture=NAME (a released one, e.g. wan2.1-i2v-14b)")


def diffusion_step(model_cfg: DictConfig, shape: tuple[int, int, int, int], tokens: tuple[int, int],
                   checkpointing: bool, autocast: Autocast) -> Callable[[int], StepFns]:
    """build(B) -> (train step, one guided-branch inference forward, nets) for (C, T, H, W) model-space clips,
    `tokens` = (text tokens, image tokens) of the conditions."""
    from wantrain.diffusion.model import Conditions

    def build(b: int) -> StepFns:
        model = diffusion_nets(model_cfg, checkpointing)
        c, t, h, w = shape
        text_dim, image_dim = model.condition_dims()
        micro = {n: torch.full((b,), 8.0) for n in getattr(model.denoiser, "micro_conditioning", ())} or None
        cond = Conditions(torch.randn(b, tokens[0], text_dim), torch.ones(b, tokens[0], dtype=torch.bool),
                          torch.randn(b, tokens[1] if image_dim else 0, image_dim or 0), torch.randn(b, c, t, h, w),
                          micro)
        x0 = torch.rand(b, c, t, h, w) * 2 - 1  # (B, C, T, H, W)
        steps = torch.randint(0, 1000, (b,))

        def train() -> None:
            with autocast():
                loss = model.loss(x0, cond)[0].mean()
            loss.backward()

        return train, lambda: model.eval()(x0, steps, cond), {"model": model}

    return build


def upsampler_nets(model_cfg: DictConfig, checkpointing: bool | None = None) -> dict[str, nn.Module]:
    """Generator, discriminator and the content loss (its frozen VGG at random weights: only shapes matter here)."""
    from wantrain.nets.trainable import set_trainable

    generator = instantiate(model_cfg.generator, **({} if checkpointing is None else
                                                    {"gradient_checkpointing": checkpointing}))
    trainable = model_cfg.get("trainable")
    set_trainable(generator, None if trainable is None else [str(g) for g in trainable])
    content = instantiate(model_cfg.content_loss, allow_random_weights=True, vgg_weights_path=None,
                          lpips_trunk_path=None)
    return {"generator": generator.train(), "discriminator": instantiate(model_cfg.discriminator).train(),
            "content_loss": content}


def upsampler_step(model_cfg: DictConfig, hr_shape: tuple[int, int, int], checkpointing: bool,
                   autocast: Autocast) -> Callable[[int], StepFns]:
    """build(B) -> (G step then D step as UpsamplerModule.training_step runs them in the GAN phase, one generator
    inference forward, nets) for HR crops (T, H, W) (LR = H/2 x W/2)."""
    from wantrain.losses.adversarial import discriminator_loss, generator_loss

    def build(b: int) -> StepFns:
        nets = upsampler_nets(model_cfg, checkpointing)
        g, d, content = nets["generator"], nets["discriminator"], nets["content_loss"]
        t, h, w = hr_shape
        hr = torch.rand(b, 3, t, h, w) * 2 - 1  # (B, 3, T, H, W)
        lr = torch.rand(b, 3, t, h // 2, w // 2) * 2 - 1
        level = torch.rand(b) * 0.1

        def train() -> None:
            with autocast():
                sr = g(lr, level)
                loss_g = content(sr, hr)[0] + 0.1 * generator_loss(d(sr))
            loss_g.backward()
            fake = sr.detach()
            with autocast():
                loss_d = discriminator_loss(d(hr), d(fake))
            loss_d.backward()

        return train, lambda: g.eval()(lr, level), nets

    return build
