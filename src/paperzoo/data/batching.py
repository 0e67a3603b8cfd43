"""Reading a loader's batches without the per-example cost of ``DataLoader`` where that is exact.

A ``DataLoader`` over a ``TensorDataset`` fetches a batch one example at a time
(``dataset[i]`` for every index) and then stacks the examples with ``default_collate``. For the small,
full-batch fits that post-hoc methods run (a Laplace fit of a 150-point regression takes about 1 ms of
arithmetic) that per-example Python costs as much as the fit itself. :func:`iter_batches` indexes the
dataset's tensors once per batch instead, for exactly the loaders where the result cannot differ.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

__all__ = ["iter_batches", "reads_tensors_directly"]


def reads_tensors_directly(loader: Any) -> bool:
    """Whether :func:`iter_batches` indexes ``loader``'s tensors instead of iterating it.

    True for a single-process ``DataLoader`` whose dataset is exactly a ``TensorDataset`` (not a
    subclass, which may override ``__getitem__``), with automatic batching, the default collate
    function and no memory pinning. Such a loader's batch is, by definition, ``torch.stack`` of
    ``tensor[i]`` over the batch's indices, which equals ``tensor[indices]``.
    """
    return (isinstance(loader, DataLoader) and type(loader.dataset) is TensorDataset
            and loader.num_workers == 0 and loader.batch_sampler is not None
            and loader.collate_fn is default_collate and not loader.pin_memory)


def iter_batches(loader: Iterable) -> Iterator[Any]:
    """Yield the batches ``loader`` yields, with the same values, shapes, dtypes and order.

    For a loader accepted by :func:`reads_tensors_directly`, every batch is a tuple with one tensor
    per dataset tensor, indexed directly: a slice (a view, no copy) when the batch's indices are a
    contiguous ascending run, as with ``shuffle=False``, otherwise an index gather. The loader's
    random draws are made in the same order as iterating it would make them (the iterator's base
    seed, then the sampler's), so a shuffling loader yields the same permutation and leaves the random
    state as iterating would. Batches may be views of the dataset's tensors: do not modify them in
    place. Any other iterable is iterated as it is.
    """
    if not reads_tensors_directly(loader):
        yield from loader
        return
    tensors = loader.dataset.tensors
    # the draw DataLoader's iterator makes for its workers' base seed, even with no workers
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    for indices in loader.batch_sampler:
        indices = list(indices)
        first, last = indices[0], indices[-1]
        if last - first + 1 == len(indices) and indices == list(range(first, last + 1)):
            yield tuple(t[first:last + 1] for t in tensors)
        else:
            index = torch.as_tensor(indices, dtype=torch.long)
            yield tuple(t[index] for t in tensors)
