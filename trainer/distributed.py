"""Data-parallel training with torch.distributed under `torchrun` (gloo on CPU, nccl on GPUs).

`torchrun --nproc_per_node N -m trainer fit ...` starts N processes; each sets up the process group from
torchrun's environment, trains on its own share of every epoch's batches, and PyTorch's
DistributedDataParallel averages the gradients. Rank 0 alone calibrates, exports and writes the bundle, which
is the same bundle a single process would write (plus the world size in its validation record).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    size: int = 1
    backend: str | None = None
    local_size: int = 1  # ranks on this machine: they share its CPU threads

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def join_from_environment() -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world = World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), local_size)
    log.info("distributed training: rank %d of %d (%s)", world.rank, world.size, world.backend)
    return world


def leave(world: World) -> None:
    """Tear the process group down (every rank, at the end of training)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def check_replicas_agree(world: World, modules: list[torch.nn.Module]) -> None:
    """Raise if the ranks' weights differ: each trained on other batches, so only averaged gradients agree."""
    if not world.distributed:
        return
    from trainer.errors import TrainerError

    with torch.no_grad():
        sums = [torch.cat([p.detach().flatten().double() for p in m.parameters()]).sum() for m in modules]
        local = torch.stack(sums)
    gathered = [torch.zeros_like(local) for _ in range(world.size)]
    dist.all_gather(gathered, local)
    spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if spread > 1e-6 * max(1.0, float(local.abs().max())):
        raise TrainerError(f"distributed training: ranks' weights differ by {spread:.3g}")


def rank_zero_decides(world: World, decision: bool) -> bool:
    """Rank 0's decision on every rank: a choice made from one rank's clock must not split the job."""
    if not world.distributed:
        return decision
    shared = [decision]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])
