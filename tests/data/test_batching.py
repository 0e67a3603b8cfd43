"""iter_batches yields exactly what iterating the DataLoader yields, and leaves the same random state."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from paperzoo.data.batching import iter_batches, reads_tensors_directly


def _data(n=23):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 3, 2, generator=g), torch.randint(0, 5, (n,), generator=g),
            torch.arange(n, dtype=torch.float64))


def _assert_same(direct, reference):
    assert len(direct) == len(reference) > 0
    for a, b in zip(direct, reference):
        assert isinstance(a, tuple) and isinstance(b, list) and len(a) == len(b)
        for u, v in zip(a, b):
            assert u.dtype == v.dtype and u.shape == v.shape and torch.equal(u, v)


@pytest.mark.parametrize("kwargs", [
    {"batch_size": 23}, {"batch_size": 5}, {"batch_size": 5, "drop_last": True},
    {"batch_size": 4, "shuffle": True}, {"batch_size": 6, "shuffle": True, "drop_last": True},
])
def test_same_batches_and_random_state(kwargs):
    loader = DataLoader(TensorDataset(*_data()), **kwargs)
    assert reads_tensors_directly(loader)
    torch.manual_seed(3)
    reference = list(loader)
    after_reference = torch.randn(4)
    torch.manual_seed(3)
    direct = list(iter_batches(loader))
    after_direct = torch.randn(4)
    _assert_same(direct, reference)
    assert torch.equal(after_direct, after_reference)      # the same draws, in the same order


def test_shuffling_with_its_own_generator():
    def loader():
        return DataLoader(TensorDataset(*_data()), batch_size=7, shuffle=True,
                          generator=torch.Generator().manual_seed(11))
    _assert_same(list(iter_batches(loader())), list(loader()))


def test_unshuffled_batches_are_views():
    x, y, z = _data()
    first = next(iter_batches(DataLoader(TensorDataset(x, y, z), batch_size=5)))
    assert first[0].data_ptr() == x.data_ptr() and torch.equal(first[0], x[:5])


class _Doubled(TensorDataset):
    def __getitem__(self, i):
        return tuple(2 * t[i] for t in self.tensors)


@pytest.mark.parametrize("make", [
    lambda d: DataLoader(_Doubled(*d), batch_size=5),                      # subclass may override __getitem__
    lambda d: DataLoader(TensorDataset(*d), batch_size=5, collate_fn=lambda b: b),
    lambda d: DataLoader(TensorDataset(*d), batch_size=None),              # no automatic batching
    lambda d: [(d[0][:5], d[1][:5])],                                      # not a DataLoader
])
def test_other_loaders_are_iterated_as_they_are(make):
    loader = make(_data())
    assert not reads_tensors_directly(loader)
    got, want = list(iter_batches(loader)), list(loader)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        u, v = _leaves(a), _leaves(b)
        assert len(u) == len(v) > 0 and all(torch.equal(p, q) for p, q in zip(u, v))


def _leaves(batch):
    if isinstance(batch, (list, tuple)):
        return [leaf for part in batch for leaf in _leaves(part)]
    return [batch]
