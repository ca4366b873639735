"""Data-parallel training across processes: one process per GPU (or CPU slot), started by
`torchrun` or `accelerate launch`, which set RANK / WORLD_SIZE / LOCAL_RANK for each.

Without those variables everything here is a no-op, so the train stage runs unchanged on one
device. With them, each rank trains on its own shard of the batches in a DistributedDataParallel
wrapper (NCCL on GPUs, Gloo on CPU), every rank takes the same decisions (rank 0's validation
score, a shared stop flag) so none waits forever on the others, and only rank 0 (`is_main`)
writes files or talks to MLflow.
"""
from __future__ import annotations

import atexit
import datetime
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from hfclf.infra.compute import Compute, available_cpus
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, hw: Compute, threads_setting: str | int = "auto", timeout_minutes: float = 30) -> None:
        """Join the process group; pin this rank to its GPU, or share the CPU cores among local ranks."""
        if not self.enabled:
            return
        import torch.distributed as dist

        if hw.device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            hw.device = torch.device("cuda", self.local_rank)
            backend = "nccl"
        elif hw.device.type == "cpu":
            backend = "gloo"
            if threads_setting in ("auto", None):  # torchrun sets 1 thread each; use the cores we have
                hw.threads = max(1, available_cpus() // self.local_world_size)
                torch.set_num_threads(hw.threads)
        else:
            raise UserError(f"distributed training runs on CUDA GPUs or CPUs, not on '{hw.device.type}': "
                            "set compute.device=cpu or run a single process (`make train`).")
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
            atexit.register(_close)
        log.info("rank %d/%d (local %d) joined the %s process group on %s", self.rank, self.world_size,
                 self.local_rank, backend, hw.device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `model` (which stays the one to evaluate and save)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, batches: Sequence) -> list:
        """This rank's share of an epoch's batches. Every rank gets the same count (a short list is
        topped up from its start), because each step is a collective all ranks must join."""
        if not self.enabled:
            return list(batches)
        per_rank = math.ceil(len(batches) / self.world_size)
        padded = list(batches) + list(batches[: per_rank * self.world_size - len(batches)])
        return padded[self.rank::self.world_size]

    def steps(self, n_batches: int) -> int:
        return math.ceil(n_batches / self.world_size)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any rank (e.g. one rank hit the time budget)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self._device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, value: float) -> float:
        """The mean of `value` over all ranks (e.g. the training loss each rank saw)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([float(value)], device=self._device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.item() / self.world_size

    def from_main(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank, so all of them take the same decision from it."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _device(self) -> torch.device:
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def from_env() -> Dist:
    """The process's place in a torchrun / accelerate launch job (a single process without one)."""
    def number(name: str, default: int) -> int:
        return int(os.environ.get(name, default))

    world = number("WORLD_SIZE", 1)
    return Dist(rank=number("RANK", 0), world_size=world, local_rank=number("LOCAL_RANK", 0),
                local_world_size=number("LOCAL_WORLD_SIZE", world))


LAUNCHER_ENV = "TRAIN_LAUNCHER"


def relaunch_under_launcher(module: str, args: list[str] | None = None) -> None:
    """`make train-distributed` runs `dvc repro train` with TRAIN_LAUNCHER set (e.g. `python -m
    torch.distributed.run --standalone --nproc_per_node 4`): the stage then replaces itself with that
    launcher running the same module and arguments, so DVC still runs, waits for and records it.
    `args` are the module's arguments (default: sys.argv[1:])."""
    import shlex
    import sys

    launcher = os.environ.pop(LAUNCHER_ENV, "").strip()  # popped: the launched processes must not relaunch
    if not launcher or "RANK" in os.environ:  # not asked, or already one of the launched processes
        return
    command = [*shlex.split(launcher), "-m", module, *(sys.argv[1:] if args is None else args)]
    sys.stdout.flush()
    sys.stderr.write(f"relaunching: {' '.join(command)}\n")  # logging is not configured yet
    sys.stderr.flush()
    os.execvp(command[0], command)


def weights_checksum(model: torch.nn.Module) -> float:
    """A cheap fingerprint of the weights: equal on every rank when DDP kept them in sync."""
    with torch.no_grad():
        return float(sum(p.double().sum().item() for p in model.parameters()))


def _close() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
