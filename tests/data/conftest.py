"""Shared by the data tests: WordNet 3.0 from the data root, parsed once per process (the reader caches)."""
import pytest

from paperzoo.data.roots import DataNotFoundError
from paperzoo.data.wordnet import WordNet


@pytest.fixture(scope="module")
def wn() -> WordNet:
    try:
        return WordNet.load()
    except DataNotFoundError as exc:
        pytest.skip(f"WordNet 3.0 not available (set PAPERZOO_DATA): {str(exc).splitlines()[0]}")
