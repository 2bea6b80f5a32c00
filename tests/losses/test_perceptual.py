"""Perceptual losses: weights from a path, refusal without weights, zero on identity, frozen, per frame."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from wantrain.losses.perceptual import VGG19_LAYERS, ContentLoss, LPIPSLoss, VGGFeatureLoss


@pytest.fixture()
def vgg_file(tmp_path):
    """A random VGG19 state dict in torchvision's layout (features.* + a classifier key) saved with torch.save."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def test_layer_names_follow_torchvision_indices() -> None:
    assert VGG19_LAYERS[2] == "conv1_2" and VGG19_LAYERS[16] == "conv3_4"
    assert VGG19_LAYERS[25] == "conv4_4" and VGG19_LAYERS[34] == "conv5_4" and len(VGG19_LAYERS) == 37


def test_refuses_without_weights_unless_allowed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth") as err:
        VGGFeatureLoss()
    assert "\n" not in str(err.value) and str(tmp_path / "empty") in str(err.value)
    with pytest.raises(FileNotFoundError, match="allow_random_weights"):
        ContentLoss(vgg_weights_path=tmp_path / "nope.pth")
    assert VGGFeatureLoss(allow_random_weights=True) is not None


def test_loads_weights_from_path_and_torch_home(vgg_file, tmp_path, monkeypatch) -> None:
    loss = VGGFeatureLoss(weights_path=vgg_file)
    saved = torch.load(vgg_file)
    assert torch.equal(loss.features[0].weight, saved["features.0.weight"])
    assert torch.equal(loss.features[34].weight, saved["features.34.weight"])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth
    assert torch.equal(VGGFeatureLoss().features[2].weight, saved["features.2.weight"])
    assert len(loss.features) == 35  # truncated after conv5_4


def test_zero_for_identical_positive_otherwise_and_frozen(vgg_file) -> None:
    loss = VGGFeatureLoss(weights_path=vgg_file)
    x = torch.rand(2, 3, 2, 32, 32) * 2 - 1
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    assert float(loss(x, x)) == 0.0
    assert float(loss(x, y)) > 0
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.features.training
    pred = y.clone().requires_grad_(True)
    loss(pred, x).backward()
    assert pred.grad.abs().sum() > 0  # gradients reach the input, not the frozen net


def test_per_frame_and_input_normalisation(vgg_file) -> None:
    loss = VGGFeatureLoss(layer_weights={"conv1_1": 1.0}, weights_path=vgg_file)
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    y = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    frames = torch.stack([loss(x[:, :, t], y[:, :, t]) for t in range(3)]).mean()
    assert torch.allclose(loss(x, y), frames, atol=1e-6)
    # conv1_1 on ImageNet-normalised [0, 1] input, computed by hand
    ref01 = (x[:, :, 0] + 1) / 2
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expect = loss.features[0]((ref01 - mean) / std)
    assert torch.allclose(loss.extract(x[:, :, 0])["conv1_1"], expect, atol=1e-5)


def test_not_saved_in_checkpoints_and_reloads_strictly(vgg_file) -> None:
    content = ContentLoss(vgg_weights_path=vgg_file)
    assert content.state_dict() == {}  # frozen VGG weights stay out of checkpoints
    w = content.vgg.features[0].weight.clone()
    content.load_state_dict({}, strict=True)
    assert torch.equal(content.vgg.features[0].weight, w)


def test_lpips_trunk_from_path_or_random(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        LPIPSLoss("alex")
    import torchvision

    torch.manual_seed(0)
    trunk = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    torch.save(trunk, tmp_path / "alex.pth")
    lp = LPIPSLoss("alex", trunk_path=tmp_path / "alex.pth")
    assert torch.equal(lp.lpips.net.slice2.get_submodule("3").weight, trunk["features.3.weight"])
    x = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    assert float(lp(x, x)) == 0.0 and float(lp(x, -x)) > 0
    assert not any(p.requires_grad for p in lp.parameters())


def test_content_loss_combines_weighted_terms(vgg_file) -> None:
    content = ContentLoss(l1_weight=1.0, vgg_weight=0.5, lpips_weight=0.25, vgg_weights_path=vgg_file,
                          allow_random_weights=True)
    x = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    total, parts = content(x, y)
    assert set(parts) == {"l1", "vgg", "lpips"}
    assert torch.allclose(total, parts["l1"] + 0.5 * parts["vgg"] + 0.25 * parts["lpips"])
    zero, _ = content(x, x)
    assert float(zero) == 0.0
    l1_only, parts = ContentLoss(vgg_weight=0.0)(x, y)
    assert set(parts) == {"l1"}


@pytest.mark.parametrize("which", ["vgg", "lpips"])
def test_feature_losses_run_in_fp32_under_bf16_autocast(which: str) -> None:
    """Bug 2: under bf16-mixed the VGG/LPIPS features ran in bf16 and the gradient was mostly rounding noise."""
    torch.manual_seed(0)
    loss_fn = (VGGFeatureLoss({"conv2_2": 1.0, "conv3_4": 1.0}, allow_random_weights=True) if which == "vgg"
               else LPIPSLoss(allow_random_weights=True))
    target = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    pred = (target + 0.5 / 127.5 * torch.randn_like(target)).clamp(-1, 1)  # near convergence: 0.5/255 error

    def loss_and_grad(autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = pred.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(x, target)
        (grad,) = torch.autograd.grad(loss, x)
        return loss.detach(), grad

    loss32, grad32 = loss_and_grad(False)
    loss16, grad16 = loss_and_grad(True)
    assert loss16.dtype == torch.float32
    assert torch.allclose(loss16, loss32, rtol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0)
    assert cosine > 0.999, float(cosine)
