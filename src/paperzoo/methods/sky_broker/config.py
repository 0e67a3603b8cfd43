"""Configuration and presets of the ``sky_broker`` experiment run (``paperzoo run sky_broker``)."""
from __future__ import annotations

from dataclasses import dataclass

from paperzoo.api import Preset
from paperzoo.core.config import check


@dataclass(frozen=True)
class SkyBrokerConfig:
    """Check the optimizer against brute force on random DAGs, then plan a training DAG and compare
    it with single-cloud and single-region baselines."""

    catalog: str = "synthetic"
    """``synthetic`` (random, no data needed), ``curated`` (the AWS/GCP/Azure sample shipped with
    paperzoo, plus ``<data root>/sky``) or a folder in SkyPilot's catalog layout."""
    catalog_seed: int = 0
    """Seed of the synthetic catalog."""
    data_location: str = ""
    """``cloud:region`` holding the training DAG's input data (empty: the catalog's first region)."""
    data_gb: float = 200.0
    """Size of the training DAG's input data in GB."""
    num_dags: int = 200
    """Random DAGs on which the optimizer is checked against brute force (both objectives)."""
    batches: int = 4
    """The random DAGs are checked in this many batches, with a checkpoint after each."""
    dag_tasks: int = 5
    """Tasks per random DAG."""
    max_parents: int = 5
    """Most parents of a task in a random DAG."""
    max_candidates: int = 5
    """Most candidate offerings per task in a random DAG."""
    max_runtime_h: float = 1.0
    """Longest task runtime in a random DAG, in hours."""
    max_data_gb: float = 1000.0
    """Largest output of a task in a random DAG, in GB."""
    chain_every: int = 4
    """Every n-th random DAG is a chain (solved by dynamic programming; the rest by the ILP)."""
    seed: int = 0
    """Seed of the random DAGs."""

    def __post_init__(self) -> None:
        name = "SkyBrokerConfig"
        check(bool(self.catalog.strip()), name, "catalog", "must be synthetic, curated or a folder")
        check(self.data_gb >= 0, name, "data_gb", "must be >= 0")
        check(self.num_dags >= 0, name, "num_dags", "must be >= 0")
        check(self.batches >= 1, name, "batches", "must be >= 1")
        check(self.num_dags == 0 or self.num_dags >= self.batches, name, "num_dags",
              f"must be 0 or >= batches ({self.batches})")
        check(1 <= self.dag_tasks <= 8, name, "dag_tasks", "must be in 1..8 (brute force is exponential)")
        check(self.max_parents >= 0, name, "max_parents", "must be >= 0")
        check(1 <= self.max_candidates <= 8, name, "max_candidates", "must be in 1..8")
        check(self.max_runtime_h > 0, name, "max_runtime_h", "must be > 0")
        check(self.max_data_gb >= 0, name, "max_data_gb", "must be >= 0")
        check(self.chain_every >= 1, name, "chain_every", "must be >= 1")
        check(self.data_location == "" or ":" in self.data_location, name, "data_location",
              f"expected cloud:region, got {self.data_location!r}")


PRESETS = {
    "tiny": Preset(
        "tiny", SkyBrokerConfig(num_dags=20, batches=4),
        "synthetic catalog: optimizer vs brute force on 20 random 5-task DAGs, and a training DAG plan"),
    "quick": Preset(
        "quick", SkyBrokerConfig(catalog="curated", data_location="aws:us-east-1", data_gb=200.0, num_dags=200),
        "curated AWS/GCP/Azure catalog: 200 random DAGs vs brute force, and preprocess -> train -> eval "
        "with 200 GB of data in aws:us-east-1 against single-cloud and single-region baselines",
        dataset="sky"),
}
