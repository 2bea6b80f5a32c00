"""Frozen perceptual losses: VGG19 feature L1, optional LPIPS, and `ContentLoss` = L1 + VGG (+ LPIPS)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from wantrain.io.weights import load_torch_file

VGG19_FILE = "vgg19-dcbb9e9d.pth"
LPIPS_TRUNK_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
DEFAULT_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layer_names() -> list[str]:
    """Names of torchvision vgg19().features entries: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names, block, idx = [], 1, 1
    for v in cfgs["E"]:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


VGG19_LAYERS = _vgg19_layer_names()


def hub_checkpoint(filename: str) -> Path:
    """$TORCH_HOME/hub/checkpoints/<filename> (torch.hub convention; ~/.cache/torch when TORCH_HOME is unset)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _missing(what: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} weights not found at {path}: put {path.name} there (TORCH_HOME convention) or set the weights "
        f"path in the config; pass allow_random_weights=True only for tests")


def _frames(x: torch.Tensor) -> torch.Tensor:
    """Video (B, C, T, H, W) -> float32 frames (B*T, C, H, W); images pass through (as float32)."""
    if x.dim() == 5:
        return x.float().transpose(1, 2).flatten(0, 1)
    if x.dim() != 4:
        raise ValueError(f"perceptual losses expect (B, C, H, W) or (B, C, T, H, W), got {tuple(x.shape)}")
    return x.float()


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """Autocast off on x's device: feature losses run in fp32 under bf16-mixed (their gradients are tiny
    differences of large activations, which bf16 rounds away near convergence)."""
    return torch.autocast(x.device.type, enabled=False)


class _FrozenMixin(nn.Module):
    """Keeps sub-networks in eval mode, without gradients, and out of `state_dict` (not saved in checkpoints)."""

    _frozen_prefixes: tuple[str, ...] = ()

    def _freeze(self) -> None:
        for name in self._frozen_prefixes:
            getattr(self, name).requires_grad_(False).eval()
        self.register_state_dict_post_hook(self._drop_frozen)
        self.register_load_state_dict_pre_hook(self._fill_frozen)

    @staticmethod
    def _drop_frozen(module: _FrozenMixin, state: dict[str, Any], prefix: str, local: Any) -> None:
        for key in [k for k in state if any(k.startswith(prefix + p + ".") for p in module._frozen_prefixes)]:
            del state[key]

    @staticmethod
    def _fill_frozen(module: _FrozenMixin, state: dict[str, Any], prefix: str, *args: Any) -> None:
        """Checkpoints carry no frozen weights: keep the loaded ones (strict loading still passes)."""
        for p in module._frozen_prefixes:
            for key, value in getattr(module, p).state_dict().items():
                state.setdefault(f"{prefix}{p}.{key}", value)

    def train(self, mode: bool = True) -> _FrozenMixin:
        """Switch mode for everything but the frozen feature networks."""
        super().train(mode)
        for name in self._frozen_prefixes:
            getattr(self, name).eval()
        return self


class VGGFeatureLoss(_FrozenMixin):
    """Weighted L1 between VGG19 features of two images/videos in [-1, 1] (frozen, per frame)."""

    _frozen_prefixes = ("features",)

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        weights_path: str | os.PathLike[str] | None = None,
        allow_random_weights: bool = False,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        self.layer_weights = dict(DEFAULT_LAYERS if layer_weights is None else layer_weights)
        bad = [n for n in self.layer_weights if n not in VGG19_LAYERS]
        if bad:
            raise ValueError(f"unknown VGG19 layers {bad}: use names like conv3_4, relu3_4 or pool3")
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion={criterion!r} is not supported: use 'l1' or 'l2'")
        self.criterion = criterion
        last = max(VGG19_LAYERS.index(n) for n in self.layer_weights)
        features = make_layers(cfgs["E"], batch_norm=False)  # same indices as torchvision vgg19().features
        path = Path(weights_path) if weights_path else hub_checkpoint(VGG19_FILE)
        if path.is_file():
            state = load_torch_file(path, "VGG19 weights file")
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            features.load_state_dict(state, strict=True)
        elif not allow_random_weights:
            raise _missing("VGG19", path)
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # pre-activation (conv*) features must not be overwritten
        self.features = nn.Sequential(*list(features)[: last + 1])
        self._index = {VGG19_LAYERS.index(n): n for n in self.layer_weights}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._freeze()

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features {layer: (N, C, h, w)} of frames (N, 3, H, W) in [-1, 1]."""
        h = ((x + 1) / 2 - self.mean) / self.std  # [-1,1] -> [0,1] -> ImageNet norm
        out = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._index:
                out[self._index[i]] = h
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Σ_l w_l · mean|φ_l(pred) − φ_l(target)| over frames of (B, 3, [T,] H, W) inputs in [-1, 1]; fp32."""
        p, t = _frames(pred), _frames(target)
        with _no_autocast(p):
            fp = self.extract(p)
            with torch.no_grad():
                ft = self.extract(t.detach())
            loss = p.new_zeros(())
            for name, w in self.layer_weights.items():
                diff = fp[name] - ft[name]
                loss = loss + w * (diff.abs().mean() if self.criterion == "l1" else diff.pow(2).mean())
        return loss


class LPIPSLoss(_FrozenMixin):
    """LPIPS (lpips package) on frames of inputs in [-1, 1]; trunk weights from a path, never downloaded."""

    _frozen_prefixes = ("lpips",)

    def __init__(self, net: str = "alex", trunk_path: str | os.PathLike[str] | None = None,
                 allow_random_weights: bool = False) -> None:
        super().__init__()
        import lpips

        if net not in LPIPS_TRUNK_FILES:
            raise ValueError(f"LPIPS net={net!r} is not supported: use 'alex' or 'vgg'")
        path = Path(trunk_path) if trunk_path else hub_checkpoint(LPIPS_TRUNK_FILES[net])
        if not path.is_file() and not allow_random_weights:
            raise _missing(f"LPIPS {net} trunk", path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
            self.lpips = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # linear heads ship with lpips
        if path.is_file():
            state = load_torch_file(path, f"LPIPS {net} trunk weights file")
            for slice_ in (getattr(self.lpips.net, f"slice{i}") for i in range(1, self.lpips.net.N_slices + 1)):
                for idx, module in slice_.named_children():  # lpips names trunk layers by their features index
                    if isinstance(module, nn.Conv2d):
                        module.weight.data.copy_(state[f"features.{idx}.weight"])
                        module.bias.data.copy_(state[f"features.{idx}.bias"])
        self._freeze()

    def distances(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per frame (N,) of (B, 3, [T,] H, W) inputs in [-1, 1]; fp32 (autocast off)."""
        p = _frames(pred)
        with _no_autocast(p):
            return self.lpips(p, _frames(target).detach()).flatten()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS distance over frames of (B, 3, [T,] H, W) inputs in [-1, 1]; fp32 (autocast off)."""
        return self.distances(pred, target).mean()


class ContentLoss(nn.Module):
    """L_content = w_l1·|SR − HR| + w_vgg·VGG + w_lpips·LPIPS; returns (total, {name: value})."""

    def __init__(
        self,
        l1_weight: float = 1.0,
        vgg_weight: float = 1.0,
        lpips_weight: float = 0.0,
        layer_weights: Mapping[str, float] | None = None,
        vgg_weights_path: str | os.PathLike[str] | None = None,
        lpips_net: str = "alex",
        lpips_trunk_path: str | os.PathLike[str] | None = None,
        allow_random_weights: bool = False,
    ) -> None:
        super().__init__()
        self.l1_weight, self.vgg_weight, self.lpips_weight = l1_weight, vgg_weight, lpips_weight
        self.vgg = (VGGFeatureLoss(layer_weights, vgg_weights_path, allow_random_weights)
                    if vgg_weight > 0 else None)
        self.lpips = (LPIPSLoss(lpips_net, lpips_trunk_path, allow_random_weights)
                      if lpips_weight > 0 else None)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """pred, target (B, 3, [T,] H, W) in [-1, 1] -> (weighted total, detached components)."""
        parts = {"l1": F.l1_loss(pred.float(), target.float())}
        total = self.l1_weight * parts["l1"]
        if self.vgg is not None:
            parts["vgg"] = self.vgg(pred, target)
            total = total + self.vgg_weight * parts["vgg"]
        if self.lpips is not None:
            parts["lpips"] = self.lpips(pred, target)
            total = total + self.lpips_weight * parts["lpips"]
        return total, {k: v.detach() for k, v in parts.items()}
