"""torchrun / DistributedDataParallel.

``torchrun --nproc-per-node N -m torchlite train cls ...`` starts N
processes; each reads RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR /
MASTER_PORT) from the environment. On more than one node add torchrun's
rendezvous arguments, the same on every node, e.g.::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \
        --rdzv-endpoint HOST:29400 --rdzv-id luna -m torchlite train cls ...

Backends: nccl for CUDA, gloo for CPU. Each epoch's item indices are
sharded by stride (rank r takes r, r+W, r+2W, ...), so step k of the W
ranks together covers the items a single process with a W times larger
batch sees at its step k. BatchNorm statistics are taken over the global
batch: ``nn.SyncBatchNorm`` on GPU, :class:`GlobalBatchNorm` on CPU (torch's
SyncBatchNorm is GPU-only). Rank 0 alone logs, draws the progress bar and
writes checkpoints and metrics.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> World:
    """The process group torchrun describes (a 1-process World without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> None:
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        log.info("rank %d/%d: process group (%s) ready", world.rank, world.size, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker now, skipping the interpreter's teardown.

    DistributedDataParallel leaves references to the process group behind
    (torch 2.13, measured: after ``destroy_process_group``, deleting the DDP
    model and ``gc.collect()``, gloo's threads ``gloo_tcp_loop`` and
    ``pt_gloo_runloop`` still run), so they are alive while the interpreter
    and then C++ static destructors tear the process down; now and then
    (about 1 run in 30 on a loaded 2-core machine, and once in CI) one of
    them aborted the finished worker with "terminate called without an
    active exception", failing the job after everything was written.
    Everything a run leaves is on disk by now (checkpoints and metrics
    are written atomically, TensorBoard closed); logs and streams are
    flushed here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class ShardSampler(Sampler[int]):
    """Indices rank, rank+W, ... of ``range(n)``, the tail that does not
    divide by W dropped so every rank runs the same number of steps."""

    def __init__(self, n: int, world: World) -> None:
        self.n, self.world = n, world
        self.per_rank = n // world.size

    def __iter__(self):
        return iter(range(self.world.rank, self.per_rank * self.world.size, self.world.size))

    def __len__(self) -> int:
        return self.per_rank


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient.

    Ours rather than ``torch.distributed.nn.functional.all_reduce``: with
    that one, a gloo rank that reached ``destroy_process_group`` while its
    peer was still busy (rank 0 writing a checkpoint) aborted now and then
    with "terminate called without an active exception" (reproduced 2 in 6
    runs; 0 in 10 with this Function). Both collectives here run on the
    calling thread."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are summed over all ranks
    (autograd flows through the all-reduce), for CPU process groups."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xd = x.double()
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        stats = _SumOverRanks.apply(torch.cat([xd.sum(dims), (xd * xd).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
            self.running_var.mul_(1 - m).add_((var * n / (n - 1)).to(self.running_var.dtype), alpha=m)
        y = (xd - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        y = y.to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers that normalize over the global batch."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            g = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                child.track_running_stats)
            g.load_state_dict(child.state_dict())
            setattr(model, name, g)
        else:
            convert_batchnorm(child, device)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def gather(obj, world: World) -> list:
    """Every rank's ``obj`` (a list of one element without a process group)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out
