"""Data loaders that give the same global batches whatever the number of processes.

Training always uses torch's ``DistributedSampler`` (with one replica when not distributed): the epoch's
permutation depends only on the seed and the epoch, and rank ``r`` of ``W`` takes every ``W``-th index, so
``W`` processes with batch ``B`` see exactly the images one process sees with batch ``W * B``; the tail (fewer
than ``W`` images) is dropped rather than padded with repeats, so no image is seen twice in an epoch. Evaluation
shards without padding, so that summed metrics count every image exactly once.
"""
from typing import Callable, Iterator, Optional, Sized

from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler

__all__ = ['ShardSampler', 'build_loader', 'set_epoch']


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
    """A ``DataLoader`` for one process of ``world_size``; call :func:`set_epoch` at the start of each epoch.

    An ``IterableDataset`` (a shard stream, :mod:`uniconvnet.data.streaming`) shards itself across processes and
    workers: it is told the worker count and gets no sampler.
    """
    drop_last = is_training if drop_last is None else drop_last
    common = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_fn,
                  drop_last=drop_last, persistent_workers=persistent_workers and num_workers > 0)
    if isinstance(dataset, IterableDataset):
        if hasattr(dataset, 'set_loader_cfg'):  # timm's readers size the epoch by the number of workers
            dataset.set_loader_cfg(num_workers=num_workers)
        return DataLoader(dataset, **common)
    if is_training:
        # drop_last: the tail of the permutation (fewer than world_size indices) is left out instead of padded
        # with repeats, so that no image is seen twice in an epoch
        sampler: Sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                              drop_last=True)
    else:
        sampler = ShardSampler(dataset, world_size, rank)
    return DataLoader(dataset, sampler=sampler, **common)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Start epoch ``epoch`` (0-based): the sampler's permutation, or a shard stream's shuffle, follows it."""
    for part in (loader.sampler, loader.dataset):
        if hasattr(part, 'set_epoch'):
            part.set_epoch(epoch)
