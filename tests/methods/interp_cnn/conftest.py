"""Tiny networks and maps: one intra-op thread for every interp_cnn test."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
