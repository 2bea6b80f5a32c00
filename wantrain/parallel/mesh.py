"""The device mesh of a run: data parallel x ring x Ulysses (the last two make one sequence-parallel group)."""

from __future__ import annotations

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

MESH_DIMS = ("data_parallel", "ring", "ulysses")


def build_mesh(device_type: str, world_size: int, ulysses: int = 1, ring: int = 1) -> DeviceMesh:
    """A (world / (ulysses x ring), ring, ulysses) mesh; ranks of one sequence group are adjacent (one node)."""
    sequence = int(ulysses) * int(ring)
    if sequence < 1 or world_size % sequence:
        raise ValueError(f"sequence parallelism over {sequence} ranks (ulysses {ulysses} x ring {ring}) does not "
                         f"divide the {world_size} processes; pick degrees whose product divides the process count")
    return init_device_mesh(device_type, (world_size // sequence, int(ring), int(ulysses)), mesh_dim_names=MESH_DIMS)


def shard_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """The 1-D mesh of all ranks that FSDP2 shards parameters over (data and sequence ranks alike, as torchtitan's
    dp_shard_cp): a sequence group holds one replica's activations, so its parameters shard over it too."""
    return init_device_mesh(mesh.device_type, (mesh.size(),), mesh_dim_names=("shard",))


def sequence_degree(mesh: DeviceMesh) -> int:
    """Ranks per sequence-parallel group (ring x Ulysses)."""
    return mesh["ring"].size() * mesh["ulysses"].size()


def data_parallel_rank(mesh: DeviceMesh) -> tuple[int, int]:
    """(rank, size) along the data-parallel dimension: the ranks of one sequence group read the same batches."""
    dp = mesh["data_parallel"]
    return dp.get_local_rank(), dp.size()
