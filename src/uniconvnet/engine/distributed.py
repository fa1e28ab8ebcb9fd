"""One process or many (``torchrun``): rank, world size, device, and the few collectives the trainer needs."""
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ['DistributedContext', 'init_distributed', 'resolve_device']


def resolve_device(device: str = 'auto', local_rank: int = 0) -> torch.device:
    """'auto' is the process's GPU when there is one, else the CPU."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f'--device {device}: not a device; use auto, cpu, cuda or cuda:N') from e
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'--device {device}: CUDA is not available on this machine; use --device cpu')
        if dev.index is None:
            dev = torch.device('cuda', local_rank)
    return dev


@dataclass
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``. Rank 0 logs and saves."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes, in place (and returned); a no-op for one process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_min(self, flag: bool) -> bool:
        """True only if ``flag`` is true on every process."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0.5)

    def all_gather_object(self, obj: Any) -> List[Any]:
        if not self.distributed:
            return [obj]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = 'auto') -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on GPUs, gloo on CPUs)."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if dev.type == 'cuda':
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend='nccl' if dev.type == 'cuda' else 'gloo')
    return DistributedContext(rank, world_size, local_rank, dev)
