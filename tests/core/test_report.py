"""The report finds each method's headline metric, whatever prefix it carries."""
import types

import pytest

from paperzoo.core import report


@pytest.mark.parametrize("headline, metrics, expected", [
    ("test/mrr", {"test/mrr": 0.5, "valid/mrr": 0.4}, 0.5),                # the usual test split
    ("plan/cost_usd", {"plan/cost_usd": 12.5, "plan/time_h": 3.0}, 12.5),  # a method without splits
    ("test/barrier/deep_align", {"test/barrier/deep_align": 0.3}, 0.3),     # nested names
])
def test_headline_metric_is_found(headline, metrics, expected):
    spec = types.SimpleNamespace(headline=headline)
    assert report._lookup(metrics, report._headline_key(spec)) == expected
