"""Process-group setup for ``torchrun``: ranks, devices, collectives that fail loudly.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup` reads them and joins the group (gloo on CPU, nccl on CUDA) with a
finite ``timeout``, so a dead or hung worker turns into a :class:`TrainingError` on the others
instead of a hang.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from layerlab.errors import TrainingError

__all__ = ["Distributed", "setup", "resolve_device"]


@dataclass
class Distributed:
    """Where this process sits in the run.

    Attributes:
        rank: 0 … world_size − 1 (0 without torchrun).
        world_size: number of processes (1 without torchrun).
        device: the device this process trains on.
        owns_group: this object created the process group and destroys it in :meth:`close`.
    """

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or max) ``tensor`` over all processes in place; a no-op for one process."""
        if self.enabled:
            try:
                dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
            except RuntimeError as err:
                raise self.lost(err) from err
        return tensor

    def all_gather(self, obj: object) -> list:
        """Every process's ``obj``, in rank order (``[obj]`` for one process)."""
        if not self.enabled:
            return [obj]
        gathered: list = [None] * self.world_size
        try:
            dist.all_gather_object(gathered, obj)
        except RuntimeError as err:
            raise self.lost(err) from err
        return gathered

    def lost(self, err: BaseException) -> TrainingError:
        """The error for a collective that failed: a peer died, hung past the timeout, or the network broke."""
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return TrainingError(
            f"rank {self.rank} of {self.world_size}: a collective operation failed ({first_line[:300]}); "
            "another worker has probably died or hung past ddp_timeout — check its log, then restart all "
            "workers with --resume to continue from the last checkpoint"
        )

    def close(self, finished: bool = False) -> None:
        """Leave the process group. ``finished``: every rank ended its run normally, so they first
        wait for each other (a barrier): gloo aborts a process that tears its group down while a
        peer still talks to it. After a failure no barrier is tried (a dead peer would hold it up
        to the timeout)."""
        if self.owns_group and dist.is_initialized():
            if finished and self.enabled:
                try:
                    dist.barrier()
                except RuntimeError:  # a peer left after all: tear down anyway
                    pass
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → CUDA (``cuda:local_rank``) when available, else CPU; ``"cuda"`` → ``cuda:local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device={name!r} was requested but CUDA is not available here; use device='cpu' or 'auto'")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device: str, timeout_seconds: float) -> Distributed:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (or reuse one already joined).

    Args:
        device: as :attr:`TrainConfig.device`.
        timeout_seconds: collective timeout (``init_process_group(timeout=...)``).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), resolve_device(device, local_rank))
    if world_size == 1:
        return Distributed(0, 1, resolve_device(device))
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise TrainingError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} is not set: launch multi-process training "
            "with `torchrun --nproc_per_node N -m layerlab train ...`, or unset WORLD_SIZE"
        )
    torch_device = resolve_device(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    backend = "nccl" if torch_device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds))
    except (RuntimeError, ValueError) as err:
        raise TrainingError(
            f"rank {os.environ['RANK']} of {world_size}: could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({str(err).splitlines()[0] if str(err) else err!r}); "
            "check that every worker was started and that the port is free"
        ) from err
    return Distributed(dist.get_rank(), world_size, torch_device, owns_group=True)
