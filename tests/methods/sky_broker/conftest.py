"""Shared fixtures of the sky_broker tests: small explicit catalogs, a job database, a broker."""
from __future__ import annotations

from pathlib import Path

import pytest

from paperzoo.methods.sky_broker.broker import Broker, BrokerOptions
from paperzoo.methods.sky_broker.catalog import Catalog, MatrixNetwork, Offering
from paperzoo.methods.sky_broker.state import JobDB

LOCATIONS = ("a:r1", "a:r2", "b:r1")


def offering(location: str, instance: str, price: float, *, zone: str = "z1", acc: str | None = None,
             vcpus: float = 8, spot: float | None = None) -> Offering:
    cloud, region = location.split(":")
    return Offering(cloud=cloud, region=region, zone=f"{region}-{zone}", instance_type=instance, vcpus=vcpus,
                    memory_gib=4 * vcpus, accelerator=acc, accelerator_count=1 if acc else 0, price=price,
                    spot_price=spot)


def small_network(egress: float = 0.05, gbps: float = 1.0) -> MatrixNetwork:
    pairs = [(s, d) for s in LOCATIONS for d in LOCATIONS]
    return MatrixNetwork({p: egress for p in pairs}, {p: gbps for p in pairs})


@pytest.fixture
def make_offering():
    return offering


@pytest.fixture
def network():
    return small_network


@pytest.fixture
def cpu_catalog() -> Catalog:
    """Five CPU offerings with distinct prices (cheapest first: a:r1/z1, a:r1/z2, a:r2, b:r1, a:r2 big)."""
    return Catalog((
        offering("a:r1", "small", 1.0, zone="z1"),
        offering("a:r1", "small", 1.1, zone="z2"),
        offering("a:r2", "small", 1.3),
        offering("b:r1", "other", 1.6),
        offering("a:r2", "big", 2.0, vcpus=16),
    ), small_network(), "cpu-test")


@pytest.fixture
def db(tmp_path: Path) -> JobDB:
    return JobDB(tmp_path / "state.db")


@pytest.fixture
def make_broker(tmp_path: Path, db: JobDB):
    def make(catalog: Catalog, router=None, **options) -> Broker:
        opts = {"poll_s": 0.05, "attempt_timeout_s": 5.0, **options}
        return Broker(catalog, db, BrokerOptions(**opts), tmp_path / "home", router=router)

    return make
