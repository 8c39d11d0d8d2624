"""Data-parallel training on ``torch.distributed``, launched with ``torchrun``.

``torchrun --nproc_per_node=N -m spikeshield.cli train ...`` starts N processes; each one sees
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and :func:`init_distributed` joins them into one process
group (NCCL on CUDA, gloo on CPU). Every global batch is split across the ranks, gradients are
averaged by ``DistributedDataParallel``, metrics are summed across ranks, and only rank 0 writes
files. Without those variables everything runs in one process, unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from spikeshield.errors import UsageError


@dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: Tensor) -> Tensor:
        """Sum a tensor over all ranks (identity in one process)."""
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group described by torchrun's environment, if there is one.

    Returns the context and the device this rank computes on (``cuda:LOCAL_RANK`` on GPUs).
    A group the caller already initialised is used as it is and left open.
    """
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return DistContext(), device
        if not dist.is_available():
            raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        ctx = DistContext(rank, world, local_rank, owns_group=True)
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"rank {ctx.rank} wants GPU {ctx.local_rank} but only {torch.cuda.device_count()} are visible"
            )
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return ctx, device
