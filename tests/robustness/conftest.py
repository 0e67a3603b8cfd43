"""Shared fixtures of the robustness tests (faults driven through the CLI as a user would)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process runs use one intra-op thread (tiny presets; the machine is shared), put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
