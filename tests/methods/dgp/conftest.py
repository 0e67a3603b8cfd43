"""Tiny matrices: one intra-op thread for every dgp test."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
