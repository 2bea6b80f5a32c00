"""Launched by test_equality.py with torchrun (2 processes, gloo): one optimizer step of a tiny Wan DiT and a tiny
UNet under FSDP2 over 2 data ranks, and of the DiT under 2-rank sequence parallelism + FSDP2, each against the same
step in one process without parallelism (computed on every rank). Rank 0 writes the largest differences as JSON."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformerBlock

from wantrain.nets.unet import SpatioTemporalUNet, UNetBlock
from wantrain.parallel.context_parallel import enable_sequence_parallel
from wantrain.parallel.fsdp2 import blocks_of, checkpoint_blocks, compile_blocks, shard
from wantrain.parallel.mesh import build_mesh, data_parallel_rank, shard_mesh

BATCH, CLIP = 4, (3, 8, 8)  # latents (B, 4, T, H, W); the DiT sees 3x4x4 = 48 tokens


def build(kind: str) -> tuple[torch.nn.Module, type]:
    torch.manual_seed(0)
    if kind == "wan":
        net = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=8, in_channels=4,
                                    out_channels=4, text_dim=16, freq_dim=32, ffn_dim=64, num_layers=2,
                                    cross_attn_norm=True, rope_max_seq_len=32)
        return net, WanTransformerBlock
    net = SpatioTemporalUNet(model_channels=16, in_channels=4, out_channels=4, channel_mult=(1, 2), num_res_blocks=1,
                             attention_levels=(1,), head_dim=8, context_dim=16, pooled_dim=None, norm_groups=4)
    with torch.no_grad():  # no zero-initialised outputs: every parameter gets a gradient
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net, UNetBlock


def batch() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, 4, *CLIP, generator=g), torch.tensor([100.0, 400.0, 700.0, 900.0]),
            torch.randn(BATCH, 7, 16, generator=g), torch.randn(BATCH, 4, *CLIP, generator=g)]


def step(kind: str, net: torch.nn.Module, x, t, text, target) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Loss (mean over this rank's clips), pre-clip gradient norm, gradients and weights after one AdamW step."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    out = net(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0] if kind == "wan" \
        else net(x, t, context=text)
    loss = (out - target).square().mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
    grads = {n: full(p.grad) for n, p in net.named_parameters()}
    opt.step()
    return loss.detach(), full(norm), grads, {n: full(p.detach()) for n, p in net.named_parameters()}


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def compare(kind: str, ulysses: int, offload: bool = False, compile_backend: str | None = None) -> dict[str, float]:
    reference = step(kind, build(kind)[0], *batch())
    net, block = build(kind)
    mesh = build_mesh("cpu", dist.get_world_size(), ulysses=ulysses)
    rank, dp = data_parallel_rank(mesh)
    if ulysses > 1:
        enable_sequence_parallel(net, mesh)
    blocks = blocks_of(net, [block])
    checkpoint_blocks(blocks)
    if compile_backend:
        compile_blocks(blocks, compile_backend)
    shard(net, blocks, shard_mesh(mesh), None, None, cpu_offload=offload, gradient_divide_factor=dp)
    n = BATCH // dp
    loss, norm, grads, weights = step(kind, net, *(v[rank * n:(rank + 1) * n] for v in batch()))
    dist.all_reduce(loss)
    loss /= dist.get_world_size()  # ranks of a sequence group hold the same loss; data ranks' halves average
    return {"blocks": len(blocks), "loss": (loss - reference[0]).abs().item(), "loss_value": reference[0].item(),
            "grad_norm": (norm - reference[1]).abs().item(), "grad_norm_value": reference[1].item(),
            "grads": max((grads[k] - reference[2][k]).abs().max().item() for k in grads),
            "weights": max((weights[k] - reference[3][k]).abs().max().item() for k in weights)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    report = {"wan_fsdp2_dp2": compare("wan", 1), "wan_sequence_parallel_2": compare("wan", 2),
              "unet_fsdp2_dp2": compare("unet", 1),
              # the other per-block options on the same path: CPU offload, torch.compile (dynamo, eager backend)
              "wan_fsdp2_offload_compiled": compare("wan", 1, offload=True, compile_backend="eager")}
    try:  # ring attention on torch SDPA: refused before any step
        enable_sequence_parallel(build("wan")[0], build_mesh("cpu", dist.get_world_size(), ring=2))
    except ValueError as err:
        report["ring_on_sdpa"] = str(err)
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(report, f, indent=1)
    dist.destroy_process_group()
