"""The per-agent matrices are tiny: one intra-op thread for every dist_gcn test."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
