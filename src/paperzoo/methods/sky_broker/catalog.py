"""The catalog of offerings (instance types per cloud/region/zone with prices) and the network
between regions (egress price per GB, measured throughput).

Offerings are read from CSV files in SkyPilot's catalog layout, ``<dir>/<cloud>/vms.csv`` with the
columns ``InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB, Price, SpotPrice,
Region, AvailabilityZone`` (``GpuInfo`` and any other column are ignored). As in SkyPilot's GCP
catalog, a row with an accelerator but no ``InstanceType`` is a GPU that attaches to an N1 host:
it is combined with every ``n1-*`` host of the same zone that may carry it, at the sum of both
prices. A curated sample for AWS, GCP and Azure ships in ``catalog/`` next to this module; point
:func:`load_catalog` at a full SkyPilot catalog folder to use real, current prices.

The network comes from the ``sky`` data set (``<data root>/sky``): AWS's egress price list
(``aws_transfer_costs.csv``: per source region, to every other AWS region and to the internet),
and throughput measured between AWS, GCP and Azure regions in January 2022
(``throughput_2022-01.csv``, bits per second). GCP and Azure egress follow the published tiers in
``catalog/egress_rules.csv`` (within a continent, between continents, to the internet).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from paperzoo.data.roots import DatasetSource, locate

log = logging.getLogger(__name__)

CATALOG_DIR = Path(__file__).with_name("catalog")
SKY_DATA = DatasetSource(
    name="sky", relpaths=("sky",), files=("aws_transfer_costs.csv", "throughput_2022-01.csv"),
    description="AWS egress prices and inter-cloud throughput (skyplane-project/skyplane)",
    url="https://github.com/skyplane-project/skyplane (skyplane/data/)")
REQUIRED_COLUMNS = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price",
                    "SpotPrice", "Region", "AvailabilityZone")
#: Most vCPUs an N1 host may have per attached GPU (GCP's documented limits, rounded down).
GCP_MAX_VCPUS_PER_GPU = {"v100": 12, "t4": 24, "p100": 16, "p4": 24, "k80": 8}


class CatalogError(ValueError):
    """A catalog file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Offering:
    """One purchasable node: an instance type (with its accelerators) in one zone."""

    cloud: str
    region: str
    zone: str
    instance_type: str
    vcpus: float
    memory_gib: float
    accelerator: str | None
    accelerator_count: int
    price: float
    """On-demand USD per hour."""
    spot_price: float | None
    """Spot USD per hour (None: no spot market)."""
    attached_accelerator: bool = False
    """GCP: the accelerator is attached to the N1 host rather than part of the machine type."""

    @property
    def location(self) -> str:
        return f"{self.cloud}:{self.region}"

    @property
    def key(self) -> str:
        """``cloud:region:zone:instance_type[+ACC:N]``, unique within a catalog."""
        acc = f"+{self.accelerator}:{self.accelerator_count}" if self.attached_accelerator else ""
        return f"{self.location}:{self.zone}:{self.instance_type}{acc}"

    def hourly(self, spot: bool) -> float:
        if spot:
            if self.spot_price is None:
                raise ValueError(f"{self.key} has no spot price")
            return self.spot_price
        return self.price

    def describe(self) -> str:
        acc = f" {self.accelerator}:{self.accelerator_count}" if self.accelerator else ""
        return f"{self.instance_type}{acc}"


class Network(Protocol):
    """Egress prices and transfer speed between ``cloud:region`` locations."""

    def egress_usd_per_gb(self, src: str, dst: str) -> float: ...

    def gbps(self, src: str, dst: str) -> float: ...


def transfer_hours(network: Network, src: str, dst: str, size_gb: float) -> float:
    """Hours to move ``size_gb`` from ``src`` to ``dst`` (0 within a region)."""
    if src == dst or size_gb <= 0:
        return 0.0
    return size_gb * 8.0 / network.gbps(src, dst) / 3600.0


def egress_usd(network: Network, src: str, dst: str, size_gb: float) -> float:
    """USD to move ``size_gb`` from ``src`` to ``dst`` (0 within a region)."""
    if src == dst or size_gb <= 0:
        return 0.0
    return size_gb * network.egress_usd_per_gb(src, dst)


@dataclass(frozen=True)
class Catalog:
    """Offerings plus the network between their regions."""

    offerings: tuple[Offering, ...]
    network: Network
    name: str = "catalog"

    @property
    def clouds(self) -> list[str]:
        return sorted({o.cloud for o in self.offerings})

    @property
    def locations(self) -> list[str]:
        return sorted({o.location for o in self.offerings})

    def restricted(self, clouds: Iterable[str] | None = None, locations: Iterable[str] | None = None) -> Catalog:
        """The same catalog with only the given clouds and/or ``cloud:region`` locations."""
        clouds = set(clouds) if clouds is not None else None
        locations = set(locations) if locations is not None else None
        kept = tuple(o for o in self.offerings
                     if (clouds is None or o.cloud in clouds) and (locations is None or o.location in locations))
        return Catalog(kept, self.network, self.name)


# ------------------------------------------------------------------------------- geography
_CONTINENT_WORDS = (
    ("af", ("af-", "africa")),
    ("apac", ("ap-", "asia", "australia", "japan", "korea", "india", "jio")),
    ("eu", ("eu-", "europe", "uk", "france", "germany", "norway", "switzerland", "sweden", "poland",
            "italy", "spain")),
    ("sa", ("sa-", "southamerica", "brazil")),
    ("me", ("me-", "uae", "qatar", "israel")),
    ("na", ("us", "ca-", "canada", "northamerica", "mexico")),
)


def continent(region: str) -> str:
    """A coarse continent code of a region name of any of the three clouds (``unknown`` if none)."""
    name = region.lower()
    for code, words in _CONTINENT_WORDS:
        if any(name.startswith(w) if w.endswith("-") else w in name for w in words):
            return code
    return "unknown"


def split_location(location: str) -> tuple[str, str]:
    cloud, _, region = location.partition(":")
    return cloud, region


# --------------------------------------------------------------------------------- network
class MeasuredNetwork:
    """Egress prices from AWS's list and published GCP/Azure tiers; throughput from measurements.

    Pairs without a measurement use the median throughput measured between the same two clouds
    (and the overall median when none was measured).
    """

    def __init__(self, aws_prices: Mapping[tuple[str, str], float], rules: Mapping[tuple[str, str], float],
                 measured_gbps: Mapping[tuple[str, str], float]):
        self.aws_prices = dict(aws_prices)
        self.rules = dict(rules)
        self.measured = dict(measured_gbps)
        by_clouds: dict[tuple[str, str], list[float]] = {}
        for (src, dst), value in self.measured.items():
            by_clouds.setdefault((split_location(src)[0], split_location(dst)[0]), []).append(value)
        self.cloud_median = {k: statistics.median(v) for k, v in by_clouds.items()}
        self.overall_median = statistics.median(self.measured.values()) if self.measured else 1.0

    def egress_usd_per_gb(self, src: str, dst: str) -> float:
        if src == dst:
            return 0.0
        src_cloud, src_region = split_location(src)
        dst_cloud, dst_region = split_location(dst)
        if src_cloud == "aws":
            if dst_cloud == "aws" and (src_region, dst_region) in self.aws_prices:
                return self.aws_prices[(src_region, dst_region)]
            if (src_region, "internet") in self.aws_prices:
                return self.aws_prices[(src_region, "internet")]
            raise KeyError(f"no AWS egress price from {src_region!r} in aws_transfer_costs.csv")
        if dst_cloud != src_cloud:
            scope = "internet"
        else:
            scope = "intra_continent" if continent(src_region) == continent(dst_region) else "inter_continent"
        try:
            return self.rules[(src_cloud, scope)]
        except KeyError:
            raise KeyError(f"no egress rule for cloud {src_cloud!r} scope {scope!r}; "
                           f"add one to {CATALOG_DIR / 'egress_rules.csv'}") from None

    def gbps(self, src: str, dst: str) -> float:
        if (src, dst) in self.measured:
            return self.measured[(src, dst)]
        if (dst, src) in self.measured:
            return self.measured[(dst, src)]
        key = (split_location(src)[0], split_location(dst)[0])
        return self.cloud_median.get(key, self.cloud_median.get(key[::-1], self.overall_median))


class MatrixNetwork:
    """An explicit network: prices and speeds per ordered location pair (synthetic catalogs)."""

    def __init__(self, egress: Mapping[tuple[str, str], float], speed: Mapping[tuple[str, str], float]):
        self.egress = dict(egress)
        self.speed = dict(speed)

    def egress_usd_per_gb(self, src: str, dst: str) -> float:
        return 0.0 if src == dst else self.egress[(src, dst)]

    def gbps(self, src: str, dst: str) -> float:
        return self.speed[(src, dst)]


def _rows(path: Path, required: Iterable[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with their line numbers; a missing column raises CatalogError."""
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: missing column(s) {', '.join(missing)}; "
                               f"found {', '.join(reader.fieldnames or [])}")
        for row in reader:
            yield reader.line_num, row


def _float(text: str | None, path: Path, line: int, column: str, *, optional: bool = False) -> float | None:
    text = (text or "").strip()
    if not text:
        if optional:
            return None
        raise CatalogError(f"{path}:{line}: {column} is empty")
    try:
        value = float(text)
    except ValueError:
        raise CatalogError(f"{path}:{line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise CatalogError(f"{path}:{line}: {column} must be a finite number >= 0, got {text!r}")
    return value


def sky_data_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The ``sky`` data folder; raises DataNotFoundError naming every path tried."""
    return locate(SKY_DATA, data_root)


def load_network(data_root: str | os.PathLike | None = None) -> MeasuredNetwork:
    """The measured network from ``<data root>/sky`` and the packaged GCP/Azure egress rules."""
    folder = sky_data_dir(data_root)
    aws_path = folder / "aws_transfer_costs.csv"
    aws = {}
    for line, row in _rows(aws_path, ("src", "dst", "cost")):
        aws[(row["src"].strip(), row["dst"].strip())] = _float(row["cost"], aws_path, line, "cost")
    rules_path = CATALOG_DIR / "egress_rules.csv"
    rules = {(row["cloud"], row["scope"]): _float(row["usd_per_gb"], rules_path, line, "usd_per_gb")
             for line, row in _rows(rules_path, ("cloud", "scope", "usd_per_gb"))}
    tp_path = folder / "throughput_2022-01.csv"
    samples: dict[tuple[str, str], list[float]] = {}
    for line, row in _rows(tp_path, ("src_region", "dst_region", "throughput_sent", "success")):
        if row["success"].strip().lower() != "true":
            continue
        bps = _float(row["throughput_sent"], tp_path, line, "throughput_sent")
        if bps:
            pair = (_measured_location(row["src_region"]), _measured_location(row["dst_region"]))
            samples.setdefault(pair, []).append(bps / 1e9)
    measured = {pair: statistics.median(values) for pair, values in samples.items()}
    return MeasuredNetwork(aws, rules, measured)


def _measured_location(text: str) -> str:
    """``gcp:us-central1-a`` (a zone in the measurements) -> ``gcp:us-central1``."""
    cloud, region = split_location(text.strip())
    if cloud == "gcp" and region.count("-") == 2:
        region = region.rsplit("-", 1)[0]
    return f"{cloud}:{region}"


# ------------------------------------------------------------------------------- offerings
def read_vms_csv(path: str | os.PathLike, cloud: str) -> list[Offering]:
    """Offerings of one cloud from a SkyPilot ``vms.csv`` (GCP's attachable GPUs combined with N1 hosts)."""
    path = Path(path)
    plain: list[Offering] = []
    attachable: list[tuple[Offering, int]] = []
    for line, row in _rows(path, REQUIRED_COLUMNS):
        acc = (row["AcceleratorName"] or "").strip()
        acc_count = _float(row["AcceleratorCount"], path, line, "AcceleratorCount", optional=True) or 0.0
        if acc and not acc_count:
            raise CatalogError(f"{path}:{line}: AcceleratorCount is empty for accelerator {acc!r}")
        region = row["Region"].strip()
        if not region:
            raise CatalogError(f"{path}:{line}: Region is empty")
        instance = (row["InstanceType"] or "").strip()
        if not instance and not acc:
            raise CatalogError(f"{path}:{line}: neither InstanceType nor AcceleratorName is set")
        offering = Offering(
            cloud=cloud, region=region, zone=(row["AvailabilityZone"] or "").strip() or region,
            instance_type=instance,
            vcpus=_float(row["vCPUs"], path, line, "vCPUs", optional=not instance) or 0.0,
            memory_gib=_float(row["MemoryGiB"], path, line, "MemoryGiB", optional=not instance) or 0.0,
            accelerator=acc if acc and acc.upper() != "CPU-ONLY" else None,
            accelerator_count=int(acc_count) if acc and acc.upper() != "CPU-ONLY" else 0,
            price=_float(row["Price"], path, line, "Price"),
            spot_price=_float(row["SpotPrice"], path, line, "SpotPrice", optional=True))
        if instance:
            plain.append(offering)
        else:
            attachable.append((offering, line))
    return plain + _attach_gpus(plain, attachable, path)


def _attach_gpus(hosts: list[Offering], gpus: list[tuple[Offering, int]], path: Path) -> list[Offering]:
    """GCP: each attachable GPU row combined with every N1 host of its zone that may carry it."""
    out = []
    n1 = [h for h in hosts if h.instance_type.startswith("n1-") and h.accelerator is None]
    for gpu, line in gpus:
        cap = GCP_MAX_VCPUS_PER_GPU.get(gpu.accelerator.lower(), 12) * gpu.accelerator_count
        for host in n1:
            if host.zone != gpu.zone or host.vcpus > cap:
                continue
            spot = (host.spot_price + gpu.spot_price
                    if host.spot_price is not None and gpu.spot_price is not None else None)
            out.append(Offering(cloud=gpu.cloud, region=gpu.region, zone=gpu.zone,
                                instance_type=host.instance_type, vcpus=host.vcpus,
                                memory_gib=host.memory_gib, accelerator=gpu.accelerator,
                                accelerator_count=gpu.accelerator_count, price=host.price + gpu.price,
                                spot_price=spot, attached_accelerator=True))
        if not any(h.zone == gpu.zone for h in n1):
            log.debug("%s:%d: no N1 host in zone %s for %s", path, line, gpu.zone, gpu.accelerator)
    return out


def load_offerings(directory: str | os.PathLike, clouds: Iterable[str] | None = None) -> list[Offering]:
    """All ``<directory>/<cloud>/vms.csv`` files (or only ``clouds``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(f"{directory}: catalog folder not found (expected <dir>/<cloud>/vms.csv)")
    wanted = sorted(clouds) if clouds is not None else sorted(
        p.name for p in directory.iterdir() if (p / "vms.csv").is_file())
    if not wanted:
        raise CatalogError(f"{directory}: no <cloud>/vms.csv file found")
    offerings: list[Offering] = []
    for cloud in wanted:
        path = directory / cloud / "vms.csv"
        if not path.is_file():
            raise CatalogError(f"{path}: not found (cloud {cloud!r})")
        offerings.extend(read_vms_csv(path, cloud))
    return offerings


def load_catalog(directory: str | os.PathLike | None = None, *, data_root: str | os.PathLike | None = None,
                 clouds: Iterable[str] | None = None) -> Catalog:
    """A catalog folder in SkyPilot's layout (default: the curated sample) with the measured network."""
    directory = Path(directory) if directory is not None else CATALOG_DIR
    name = "curated" if directory == CATALOG_DIR else str(directory)
    return Catalog(tuple(load_offerings(directory, clouds)), load_network(data_root), name)


def synthetic_catalog(seed: int, *, clouds: int = 3, regions_per_cloud: int = 3, types_per_region: int = 4,
                      accelerators: tuple[str, ...] = ("GPU-A", "GPU-B")) -> Catalog:
    """A random catalog with a random network (for tests and the ``tiny`` preset; no data needed).

    Prices are drawn per instance type and scaled per region; egress costs 0.01-0.12 USD/GB (more
    between clouds), throughput 1-10 Gbps.
    """
    rng = np.random.default_rng(seed)
    cloud_names = [f"cloud{c}" for c in range(clouds)]
    locations = [f"{c}:region{r}" for c in cloud_names for r in range(regions_per_cloud)]
    offerings = []
    base = {t: float(rng.uniform(0.1, 4.0)) for t in range(types_per_region)}
    for loc in locations:
        cloud, region = split_location(loc)
        factor = float(rng.uniform(0.8, 1.3))
        for t in range(types_per_region):
            acc = accelerators[t % len(accelerators)] if t % 2 else None
            price = round(base[t] * factor, 4)
            offerings.append(Offering(cloud=cloud, region=region, zone=f"{region}-a", instance_type=f"type{t}",
                                      vcpus=float(4 * (t + 1)), memory_gib=float(16 * (t + 1)),
                                      accelerator=acc, accelerator_count=1 if acc else 0, price=price,
                                      spot_price=round(price * float(rng.uniform(0.2, 0.5)), 4)))
    egress, speed = {}, {}
    for src in locations:
        for dst in locations:
            same_cloud = split_location(src)[0] == split_location(dst)[0]
            egress[(src, dst)] = round(float(rng.uniform(0.01, 0.03 if same_cloud else 0.12)), 4)
            speed[(src, dst)] = round(float(rng.uniform(1.0, 10.0)), 3)
    return Catalog(tuple(offerings), MatrixNetwork(egress, speed), f"synthetic-{seed}")
