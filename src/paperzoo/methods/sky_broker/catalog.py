"""The catalog of offerings (instance types per cloud/region/zone with prices) and the network
between regions (egress price per GB, measured throughput).

Offerings are read from CSV files in SkyPilot's catalog layout, ``<dir>/<cloud>/vms.csv``, as
SkyPilot's own catalogs (``skypilot-org/skypilot-catalog``, ``catalogs/v5`` to ``v8``) write them:

- columns in any order; ``InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB,
  Price, Region`` are required, ``SpotPrice`` and ``AvailabilityZone`` optional (Azure's and
  Lambda's files have no zone: the zone is the region), ``GpuInfo`` and any other column (Azure's
  ``Generation``) are ignored;
- an empty or zero ``Price`` means no on-demand offer and an empty or zero ``SpotPrice`` no spot
  market (SkyPilot writes 0.0 for TPU slices it has no price for); a row with neither is not
  offered and is skipped;
- accelerator names are matched case-insensitively and common aliases are normalised to
  SkyPilot's names (``nvidia-tesla-v100`` and ``Tesla V100`` -> ``V100``, ``a100-40gb`` ->
  ``A100``, see :data:`ACCELERATOR_ALIASES`). When the folder has SkyPilot's list of accelerators,
  ``<dir>/common/accelerators.csv``, every name must be in it or in :data:`KNOWN_ACCELERATORS`
  (TPU slices such as ``tpu-v6e-8`` by their family ``tpu-v6e``) and any other spelling is an
  error; without that list unknown names are kept as written (a catalog of new hardware loads);
- every malformed row (fewer or more fields than the header, a non-numeric or negative number, a
  fractional or missing accelerator count, an empty region, an unknown accelerator) raises one
  :class:`CatalogError` naming the file and line: ``.../gcp/vms.csv:42: vCPUs is not a number``.

As in SkyPilot's GCP catalog, a row with an accelerator but no ``InstanceType`` is a GPU priced
apart from its host: V100, T4, P100, P4 and K80 attach to every ``n1-*`` host of the same zone that
may carry them (GCP's vCPU limit per GPU), A100 / A100-80GB / H100 / L4 to the machine type built
for that GPU count (``a2-highgpu-Ng``, ``a2-ultragpu-Ng``, ``a3-highgpu-Ng``, ``g2-standard-*``),
each at the sum of both prices (those machine types are not offered without their GPUs); TPU
rows (``tpu-*``) are offerings of their own. A curated sample for AWS, GCP and Azure ships in
``catalog/`` next to this module; point :func:`load_catalog` at a full SkyPilot catalog folder to
use real, current prices.

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
REQUIRED_COLUMNS = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "Region")
OPTIONAL_COLUMNS = ("SpotPrice", "AvailabilityZone", "GpuInfo")
#: Most vCPUs an N1 host may have per attached GPU (GCP's documented limits, rounded down).
GCP_MAX_VCPUS_PER_GPU = {"v100": 12, "t4": 24, "p100": 16, "p4": 24, "k80": 8}
#: GCP GPUs priced apart from a dedicated machine type: accelerator -> host for a GPU count.
GCP_GPU_HOSTS = {
    "a100": lambda n: [f"a2-highgpu-{n}g"] + (["a2-megagpu-16g"] if n == 16 else []),
    "a100-80gb": lambda n: [f"a2-ultragpu-{n}g"],
    "h100": lambda n: [f"a3-highgpu-{n}g"],
    "h100-mega": lambda n: [f"a3-megagpu-{n}g"],
    "l4": lambda n: {1: ["g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16", "g2-standard-32"],
                     2: ["g2-standard-24"], 4: ["g2-standard-48"], 8: ["g2-standard-96"]}.get(n, []),
}
GCP_GPU_HOST_PREFIXES = ("a2-", "a3-", "g2-")
#: Spellings of accelerators seen in cloud APIs and catalogs (lower case) -> SkyPilot's names.
ACCELERATOR_ALIASES = {
    "nvidia-tesla-v100": "V100", "tesla v100": "V100", "tesla-v100": "V100", "v100-16gb": "V100",
    "nvidia-tesla-t4": "T4", "tesla t4": "T4", "tesla-t4": "T4",
    "nvidia-tesla-p100": "P100", "tesla p100": "P100", "nvidia-tesla-p4": "P4", "nvidia-tesla-k80": "K80",
    "nvidia-tesla-a100": "A100", "a100-40gb": "A100", "a100-sxm4-40gb": "A100",
    "nvidia-a100-80gb": "A100-80GB", "a100-sxm4-80gb": "A100-80GB",
    "nvidia-h100-80gb": "H100", "h100-80gb": "H100", "nvidia-h100-mega-80gb": "H100-MEGA",
    "nvidia-l4": "L4", "nvidia-a10g": "A10G", "nvidia-a10": "A10", "nvidia-l40s": "L40S",
}
#: Accelerators every catalog may name without a list of its own (SkyPilot's spelling).
KNOWN_ACCELERATORS = ("A10", "A100", "A100-80GB", "A10G", "A40", "Gaudi HL-205", "H100", "H100-MEGA", "H200",
                      "Inferentia", "Inferentia2", "K80", "L4", "L40S", "M60", "P100", "P4", "Radeon Pro V520", "T4",
                      "T4g", "Trainium", "Trainium2", "V100", "V100-32GB")


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
    accelerator_count: int | float
    """Accelerators per node (whole, except Azure's fractional GPUs such as ``A10: 0.5``)."""
    price: float | None
    """On-demand USD per hour (None: spot only)."""
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
        """USD per hour, spot or on-demand; ValueError if this offering has no such price."""
        if spot:
            if self.spot_price is None:
                raise ValueError(f"{self.key} has no spot price")
            return self.spot_price
        if self.price is None:
            raise ValueError(f"{self.key} has no on-demand price (spot only)")
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

    def can_price(self, location: str) -> bool:
        """Whether egress out of ``location`` has a price: an AWS region in AWS's list, or a cloud
        with rules in ``egress_rules.csv``."""
        cloud, region = split_location(location)
        if cloud == "aws":
            return (region, "internet") in self.aws_prices
        return any(c == cloud for c, _ in self.rules)

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
def canonical_accelerator(name: str, known: Mapping[str, str] | None = None) -> str | None:
    """SkyPilot's spelling of an accelerator name (case-insensitive, aliases resolved).

    ``known`` maps lower-case names to their spelling (a catalog's ``common/accelerators.csv``);
    with it, a name that is neither in it, nor in :data:`KNOWN_ACCELERATORS`, nor an alias of
    either returns None (unknown). TPU slices (``tpu-v6e-8``) are known when their family
    (``tpu-v6e``) is. Without ``known`` every name is accepted: aliases and
    :data:`KNOWN_ACCELERATORS` are normalised, others returned as written.
    """
    text = " ".join(name.split())
    lower = text.lower()
    if lower.startswith("tpu-"):
        family = lower.rsplit("-", 1)[0] if lower.count("-") >= 2 else lower
        if known is None or lower in known or family in known:
            return lower
        return None
    table = {a.lower(): a for a in KNOWN_ACCELERATORS} | dict(known or {})
    if lower in table:
        return table[lower]
    alias = ACCELERATOR_ALIASES.get(lower)
    if alias is not None:
        return table.get(alias.lower(), alias)
    return text if known is None else None


def read_known_accelerators(path: str | os.PathLike) -> dict[str, str]:
    """SkyPilot's ``common/accelerators.csv`` (column ``AcceleratorName``) as lower case -> spelling."""
    path = Path(path)
    out = {}
    for line, row in _rows(path, ("AcceleratorName",)):
        name = (row["AcceleratorName"] or "").strip()
        if not name:
            raise CatalogError(f"{path}:{line}: AcceleratorName is empty")
        out[name.lower()] = name
    return out


def _price(text: str | None, path: Path, line: int, column: str) -> float | None:
    """A price cell: None when empty or zero (not offered), else a finite number >= 0."""
    value = _float(text, path, line, column, optional=True)
    return value if value else None


def _count(text: str | None, path: Path, line: int, acc: str) -> int | float:
    value = _float(text, path, line, "AcceleratorCount", optional=True)
    if not value:
        raise CatalogError(f"{path}:{line}: AcceleratorCount is empty or 0 for accelerator {acc!r}")
    if value.is_integer():
        return int(value)
    if value > 1:
        raise CatalogError(f"{path}:{line}: AcceleratorCount must be a whole number (or a fraction of one "
                           f"GPU), got {text.strip()!r}")
    return value


def read_vms_csv(path: str | os.PathLike, cloud: str, *,
                 known_accelerators: Mapping[str, str] | None = None) -> list[Offering]:
    """Offerings of one cloud from a SkyPilot ``vms.csv`` (see the module docstring for the rules);
    GCP's separately priced GPUs are combined with their hosts. Raises CatalogError naming the
    file and line of the first malformed row."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    plain: list[Offering] = []
    attachable: list[tuple[Offering, int]] = []
    skipped = 0
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CatalogError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'nothing'}")
        col = {name: i for i, name in enumerate(header)}
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            if len(fields) != len(header):
                raise CatalogError(f"{path}:{line}: expected {len(header)} fields as in the header, got {len(fields)}")
            row = {name: fields[i].strip() for name, i in col.items()}
            offering = _offering(row, cloud, path, line, known_accelerators)
            if offering is None:
                skipped += 1
            elif offering.instance_type:
                plain.append(offering)
            else:
                attachable.append((offering, line))
    if skipped:
        log.debug("%s: %d row(s) without any price skipped (not offered)", path, skipped)
    # GCP's GPU machine types without their GPUs are not sold: they only host the GPU rows
    sold = [o for o in plain if o.accelerator is not None or not o.instance_type.startswith(GCP_GPU_HOST_PREFIXES)]
    return sold + _attach_gpus(plain, attachable, path)


def _offering(row: Mapping[str, str], cloud: str, path: Path, line: int,
              known: Mapping[str, str] | None) -> Offering | None:
    """One row as an offering (``instance_type`` empty for a GPU priced apart from its host);
    None when it has no price at all."""
    raw_acc = row["AcceleratorName"]
    acc = None if not raw_acc or raw_acc.upper() == "CPU-ONLY" else canonical_accelerator(raw_acc, known)
    if raw_acc and raw_acc.upper() != "CPU-ONLY" and acc is None:
        raise CatalogError(f"{path}:{line}: unknown accelerator {raw_acc!r} (not in the catalog's "
                           f"common/accelerators.csv nor a known name or alias)")
    count = _count(row["AcceleratorCount"], path, line, raw_acc) if acc else 0
    region = row["Region"]
    if not region:
        raise CatalogError(f"{path}:{line}: Region is empty")
    instance = row["InstanceType"]
    if not instance and not acc:
        raise CatalogError(f"{path}:{line}: neither InstanceType nor AcceleratorName is set")
    tpu = acc is not None and acc.startswith("tpu-")
    price = _price(row["Price"], path, line, "Price")
    spot = _price(row.get("SpotPrice"), path, line, "SpotPrice")
    vcpus = _float(row["vCPUs"], path, line, "vCPUs", optional=not instance) or 0.0
    memory = _float(row["MemoryGiB"], path, line, "MemoryGiB", optional=not instance) or 0.0
    if price is None and spot is None:
        return None
    return Offering(cloud=cloud, region=region, zone=row.get("AvailabilityZone") or region,
                    instance_type=instance or (acc if tpu else ""), vcpus=vcpus, memory_gib=memory,
                    accelerator=acc, accelerator_count=count, price=price, spot_price=spot)


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _attach_gpus(hosts: list[Offering], gpus: list[tuple[Offering, int]], path: Path) -> list[Offering]:
    """GCP: each separately priced GPU row combined with the hosts of its zone that may carry it
    (N1 hosts within GCP's vCPU limit per GPU, or the machine type built for that GPU count)."""
    by_zone: dict[str, list[Offering]] = {}
    for h in hosts:
        if h.accelerator is None:
            by_zone.setdefault(h.zone, []).append(h)
    out = []
    for gpu, line in gpus:
        name = gpu.accelerator.lower()
        zone_hosts = by_zone.get(gpu.zone, [])
        if name in GCP_MAX_VCPUS_PER_GPU:
            cap = GCP_MAX_VCPUS_PER_GPU[name] * gpu.accelerator_count
            fits = [h for h in zone_hosts if h.instance_type.startswith("n1-") and h.vcpus <= cap]
        elif name in GCP_GPU_HOSTS and isinstance(gpu.accelerator_count, int):
            wanted = set(GCP_GPU_HOSTS[name](gpu.accelerator_count))
            fits = [h for h in zone_hosts if h.instance_type in wanted]
        else:
            fits = []
        for host in fits:
            price, spot = _add(host.price, gpu.price), _add(host.spot_price, gpu.spot_price)
            if price is None and spot is None:
                continue
            out.append(Offering(cloud=gpu.cloud, region=gpu.region, zone=gpu.zone,
                                instance_type=host.instance_type, vcpus=host.vcpus,
                                memory_gib=host.memory_gib, accelerator=gpu.accelerator,
                                accelerator_count=gpu.accelerator_count, price=price,
                                spot_price=spot, attached_accelerator=True))
        if not fits:
            log.debug("%s:%d: no host in zone %s for %s:%s", path, line, gpu.zone, gpu.accelerator,
                      gpu.accelerator_count)
    return out


def load_offerings(directory: str | os.PathLike, clouds: Iterable[str] | None = None) -> list[Offering]:
    """All ``<directory>/<cloud>/vms.csv`` files (or only ``clouds``), accelerator names checked
    against ``<directory>/common/accelerators.csv`` when the folder has one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(f"{directory}: catalog folder not found (expected <dir>/<cloud>/vms.csv)")
    wanted = sorted(clouds) if clouds is not None else sorted(
        p.name for p in directory.iterdir() if (p / "vms.csv").is_file())
    if not wanted:
        raise CatalogError(f"{directory}: no <cloud>/vms.csv file found")
    known_path = directory / "common" / "accelerators.csv"
    known = read_known_accelerators(known_path) if known_path.is_file() else None
    offerings: list[Offering] = []
    for cloud in wanted:
        path = directory / cloud / "vms.csv"
        if not path.is_file():
            raise CatalogError(f"{path}: not found (cloud {cloud!r})")
        offerings.extend(read_vms_csv(path, cloud, known_accelerators=known))
    return offerings


def load_catalog(directory: str | os.PathLike | None = None, *, data_root: str | os.PathLike | None = None,
                 clouds: Iterable[str] | None = None) -> Catalog:
    """A catalog folder in SkyPilot's layout (default: the curated sample) with the measured network.

    Every ``vms.csv`` (or those of ``clouds``) is read and checked; offerings in locations the
    network has no egress price for (clouds without rules in ``egress_rules.csv``, such as Lambda,
    and AWS regions newer than AWS's price list) are left out with one warning naming them, so a
    full SkyPilot catalog folder plans over the AWS, GCP and Azure regions it can price.
    """
    directory = Path(directory) if directory is not None else CATALOG_DIR
    name = "curated" if directory == CATALOG_DIR else str(directory)
    offerings = load_offerings(directory, clouds)
    network = load_network(data_root)
    kept = [o for o in offerings if network.can_price(o.location)]
    if len(kept) < len(offerings):
        left_out = sorted({o.location for o in offerings} - {o.location for o in kept})
        log.warning("%s: %d offering(s) in %d location(s) without egress prices left out: %s%s", directory,
                    len(offerings) - len(kept), len(left_out), ", ".join(left_out[:10]),
                    " ..." if len(left_out) > 10 else "")
    if offerings and not kept:
        raise CatalogError(f"{directory}: no offering is in a location with egress prices (AWS regions in "
                           f"aws_transfer_costs.csv, clouds in {CATALOG_DIR / 'egress_rules.csv'})")
    return Catalog(tuple(kept), network, name)


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
