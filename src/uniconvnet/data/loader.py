"""Data loaders that give the same global batches whatever the number of processes.

Training always uses torch's ``DistributedSampler`` (with one replica when not distributed): the epoch's
permutation depends only on the seed and the epoch, and rank ``r`` of ``W`` takes every ``W``-th index, so
``W`` processes with batch ``B`` see exactly the images one process sees with batch ``W * B``. Evaluation
shards without padding, so that summed metrics count every image exactly once.
"""
from typing import Callable, Iterator, Optional, Sized

from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ['ShardSampler', 'build_loader']


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: no shuffling, no padding, no duplicates."""

    def __init__(self, data: Sized, world_size: int = 1, rank: int = 0):
        self.indices = list(range(rank, len(data), world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(dataset: Dataset, batch_size: int, is_training: bool, world_size: int = 1, rank: int = 0,
                 seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = True, drop_last: Optional[bool] = None,
                 collate_fn: Optional[Callable] = None) -> DataLoader:
    """A ``DataLoader`` for one process of ``world_size``; call ``loader.sampler.set_epoch(e)`` each epoch."""
    if is_training:
        sampler: Sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(dataset, world_size, rank)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
        collate_fn=collate_fn,
        drop_last=is_training if drop_last is None else drop_last,
        persistent_workers=persistent_workers and num_workers > 0,
    )
