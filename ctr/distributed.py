"""Rank helpers for `ctr train` under torchrun or `accelerate launch`; each one is a no-op in a single process.

The launcher sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; `init` joins the
process group from them. The trainer's tensors live on CPU (in one process too), so
the group is gloo: nccl only moves CUDA tensors.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def launched() -> bool:
    """True when a launcher started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the launcher's process group (once); nothing in a single process."""
    if launched() and not dist.is_initialized():
        dist.init_process_group("gloo")  # env:// rendezvous from the launcher's variables


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the only one that prints progress and writes files."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather(value: Any) -> list[Any]:
    """Every rank's value (picklable), in rank order; [value] in one process."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, value)
    return out


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank, so decisions taken on it (early stopping) agree."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def shard(order: torch.Tensor, part: int, parts: int) -> torch.Tensor:
    """Rank `part`'s samples of a (shuffled) order, dealt as DistributedSampler deals them.

    The order is padded by wrapping to a multiple of `parts` so every rank takes the same
    number of steps (DDP waits for all ranks at each backward); rank r takes positions
    r, r + parts, ...; so rank r's k-th batch of B / parts samples is its slice of the
    global batch k (positions k*B .. (k+1)*B - 1) that one process would train on.
    """
    if parts == 1:
        return order
    padded = order[torch.arange(len(order) + -len(order) % parts) % len(order)]  # wraps even if len < parts
    return padded[part::parts]


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel around the module under a launcher (gradients averaged over ranks); else itself."""
    if not dist.is_initialized():
        return module
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # The buffers (item tables, knowledge vectors, masking probabilities) are constants built the same on
    # every rank; re-broadcasting them before each forward would only cost time. torch 2.13 renamed the switch.
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    return DistributedDataParallel(module, **{"forward_sync_buffers" if renamed else "broadcast_buffers": False})
