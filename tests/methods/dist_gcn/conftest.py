import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The per-agent matrices are tiny: one intra-op thread is faster than contending for two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
