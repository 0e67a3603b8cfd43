"""Catalog CSVs in SkyPilot's layout, the curated sample, and the measured network."""
import shutil
from pathlib import Path

import pytest

from paperzoo.data.roots import DataNotFoundError
from paperzoo.methods.sky_broker.catalog import (
    CATALOG_DIR,
    Catalog,
    CatalogError,
    MatrixNetwork,
    canonical_accelerator,
    continent,
    load_catalog,
    load_network,
    load_offerings,
    read_vms_csv,
    transfer_hours,
)
from paperzoo.methods.sky_broker.optimizer import NoFeasiblePlan, candidates_for
from paperzoo.methods.sky_broker.spec import parse_dag

SKYPILOT = Path(__file__).with_name("skypilot_catalog")

HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n"


def test_gcp_attachable_gpus_combine_with_n1_hosts_of_the_zone(tmp_path):
    path = tmp_path / "vms.csv"
    path.write_text(HEADER + "n1-standard-8,,,8.0,30.0,,0.38,0.08,us-central1,us-central1-a\n"
                             "n1-standard-32,,,32.0,120.0,,1.52,0.32,us-central1,us-central1-a\n"
                             "n1-standard-8,,,8.0,30.0,,0.38,0.08,us-west1,us-west1-b\n"
                             ",V100,1.0,,,,2.48,0.74,us-central1,us-central1-a\n")
    offerings = read_vms_csv(path, "gcp")
    gpus = [o for o in offerings if o.accelerator]
    # only the 8-vCPU host of the same zone may carry one V100 (at most 12 vCPUs per V100)
    assert [(o.instance_type, o.zone, o.attached_accelerator) for o in gpus] == [
        ("n1-standard-8", "us-central1-a", True)]
    assert gpus[0].price == pytest.approx(0.38 + 2.48) and gpus[0].spot_price == pytest.approx(0.08 + 0.74)
    assert gpus[0].key == "gcp:us-central1:us-central1-a:n1-standard-8+V100:1"


@pytest.mark.parametrize("row, message", [
    ("m5.large,,,2.0,8.0,,abc,,us-east-1,us-east-1a", r"vms.csv:2: Price is not a number: 'abc'"),
    ("m5.large,,,2.0,8.0,,-1,,us-east-1,us-east-1a", r"vms.csv:2: Price must be a finite number >= 0"),
    ("m5.large,,,2.0,8.0,,0.1,,,us-east-1a", r"vms.csv:2: Region is empty"),
    ("p3.2xlarge,V100,,8.0,61.0,,3.06,,us-east-1,a", r"vms.csv:2: AcceleratorCount is empty"),
    ("m5.large,,,2.0,8.0,,0.1,,us-east-1", r"vms.csv:2: expected 10 fields as in the header, got 9"),
    ("m5.large,,,2.0,8.0,,0.1,,us-east-1,a,extra", r"vms.csv:2: expected 10 fields as in the header, got 11"),
    ("m5.large,,,two,8.0,,0.1,,us-east-1,a", r"vms.csv:2: vCPUs is not a number: 'two'"),
    ("m5.large,,,2.0,8 GiB,,0.1,,us-east-1,a", r"vms.csv:2: MemoryGiB is not a number: '8 GiB'"),
    ("m5.large,,,2.0,8.0,,0.1,cheap,us-east-1,a", r"vms.csv:2: SpotPrice is not a number: 'cheap'"),
    ("p3.8xlarge,V100,2.5,32.0,244.0,,12.24,,us-east-1,a", r"vms.csv:2: AcceleratorCount must be a whole number"),
    ("m5.large,,,nan,8.0,,0.1,,us-east-1,a", r"vms.csv:2: vCPUs must be a finite number >= 0"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "vms.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(CatalogError, match=message):
        read_vms_csv(path, "aws")


def test_missing_column_and_missing_folder(tmp_path):
    path = tmp_path / "vms.csv"
    path.write_text("InstanceType,Price\nm5.large,0.1\n")
    with pytest.raises(CatalogError, match="missing column.*AcceleratorName"):
        read_vms_csv(path, "aws")
    with pytest.raises(CatalogError, match="catalog folder not found"):
        load_catalog(tmp_path / "nope")


def test_missing_sky_data_names_the_paths_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as err:
        load_network(tmp_path / "root")
    text = str(err.value)
    assert "aws_transfer_costs.csv" in text and str(tmp_path / "root" / "sky") in text


def test_continents():
    assert [continent(r) for r in ("us-east-1", "eastus", "europe-west4", "westeurope", "ap-northeast-1",
                                   "australiaeast", "asia-east1", "japaneast", "sa-east-1")] == [
        "na", "na", "eu", "eu", "apac", "apac", "apac", "apac", "sa"]


def test_curated_catalog_and_measured_network(data_root):
    catalog = load_catalog(data_root=data_root)
    assert catalog.clouds == ["aws", "azure", "gcp"] and len(catalog.locations) == 12
    by_key = {o.key: o for o in catalog.offerings}
    assert by_key["aws:us-east-1:us-east-1a:p3.2xlarge"].price == pytest.approx(3.06)
    assert any(o.attached_accelerator and o.accelerator == "V100" for o in catalog.offerings)
    net = catalog.network
    assert net.egress_usd_per_gb("aws:us-east-1", "aws:us-east-2") == pytest.approx(0.01)  # AWS price list
    assert net.egress_usd_per_gb("aws:us-east-1", "gcp:us-central1") == pytest.approx(0.09)  # AWS internet
    assert net.egress_usd_per_gb("gcp:us-central1", "gcp:us-west1") == pytest.approx(0.02)  # rule table
    assert net.egress_usd_per_gb("azure:eastus", "aws:us-east-1") == pytest.approx(0.087)
    assert net.gbps("aws:us-east-1", "aws:us-west-2") > 0.5  # measured (bits/s in the file)
    assert transfer_hours(net, "aws:us-east-1", "aws:us-east-1", 1e3) == 0.0
    assert (CATALOG_DIR / "README.md").is_file()


# ------------------------------------------------------------------------- SkyPilot's own catalog files
def test_skypilot_catalog_files_load_as_they_are():
    """Per-cloud headers as SkyPilot writes them (column order, no AvailabilityZone on Azure and
    Lambda, Azure's extra Generation column, Lambda's GpuInfo after Region), empty and 0.0 prices,
    GCP GPUs and TPUs priced apart from hosts, accelerator names checked against common/."""
    offerings = {o.key: o for o in load_offerings(SKYPILOT)}
    assert {o.cloud for o in offerings.values()} == {"aws", "azure", "gcp", "lambda"}
    # AWS: zone ids, empty spot price = no spot market, lower-case 'v100' spelled as SkyPilot does
    assert offerings["aws:eu-west-1:euw1-az2:c6i.2xlarge"].spot_price is None
    assert offerings["aws:us-east-1:use1-az4:p3.2xlarge"].accelerator == "V100"
    # Azure and Lambda have no zone column: the zone is the region; fractional GPUs stay fractional
    b8 = offerings["azure:eastus:eastus:Standard_B8ms"]
    assert (b8.zone, b8.price, b8.spot_price) == ("eastus", 0.333, None)
    assert offerings["azure:eastus:eastus:Standard_NV6ads_A10_v5"].accelerator_count == 0.5
    assert offerings["lambda:us-east-1:us-east-1:gpu_1x_a100"].accelerator == "A100"
    # GCP: V100 on the N1 host its vCPU limit allows, A100 on its a2 host only, a2 hosts not sold bare
    gpus = sorted((o.instance_type, o.accelerator) for o in offerings.values() if o.attached_accelerator)
    assert gpus == [("a2-highgpu-1g", "A100"), ("n1-standard-8", "V100")]
    a100 = offerings["gcp:us-central1:us-central1-a:a2-highgpu-1g+A100:1"]
    assert a100.price == pytest.approx(0.73948 + 2.933908) and a100.spot_price == pytest.approx(0.29576 + 1.17363)
    assert not any(o.instance_type.startswith("a2-") and o.accelerator is None for o in offerings.values())
    # a TPU slice is an offering of its own; the 0.0-priced one (no price known) is not offered
    tpus = [o for o in offerings.values() if (o.accelerator or "").startswith("tpu-")]
    assert [(o.location, o.instance_type, o.price) for o in tpus] == [("gcp:us-central1", "tpu-v5litepod-4", 4.8)]


def test_accelerator_spellings():
    known = {"v100": "V100", "a100": "A100", "tpu-v5p": "tpu-v5p"}
    assert canonical_accelerator("v100", known) == "V100"
    assert canonical_accelerator("nvidia-tesla-v100", known) == "V100"
    assert canonical_accelerator("A100-40GB", known) == "A100"
    assert canonical_accelerator("TPU-v5p-128", known) == "tpu-v5p-128"
    assert canonical_accelerator("tpu-v9-8", known) is None and canonical_accelerator("V101", known) is None
    # without a list of known names: aliases and SkyPilot's common names normalised, others kept
    assert canonical_accelerator("Tesla  V100") == "V100" and canonical_accelerator("l4") == "L4"
    assert canonical_accelerator("MI300X") == "MI300X"


def _copy_with_row(tmp_path: Path, cloud: str, row: str) -> tuple[Path, int]:
    """The fixture catalog with ``row`` appended to ``<cloud>/vms.csv``; returns (dir, its line number)."""
    root = tmp_path / "catalog"
    shutil.copytree(SKYPILOT, root)
    path = root / cloud / "vms.csv"
    text = path.read_text()
    path.write_text(text + row + "\n")
    return root, text.count("\n") + 1


@pytest.mark.parametrize("cloud, row, message", [
    ("aws", "m6i.large,,,2.0,8.0,,0.096,0.04", "expected 10 fields as in the header, got 8"),
    ("gcp", "n2-standard-8,8.0,32.0,,,,us-central1,us-central1-a,0.39,abc", "SpotPrice is not a number: 'abc'"),
    ("azure", "Standard_F8s_v2,,,eight,16,,0.338,0.07,eastus,V2", "vCPUs is not a number: 'eight'"),
    ("lambda", "gpu_1x_h100,H100,1.0,26.0,lots,2.49,us-east-1,,", "MemoryGiB is not a number: 'lots'"),
    ("aws", "p5.48xlarge,Hopper100,8.0,192.0,2048.0,,98.32,,us-east-1,use1-az1", "unknown accelerator 'Hopper100'"),
    ("gcp", ",,,tpu-v9-8,1,tpu-v9-8,us-central1,us-central1-a,9.0,", "unknown accelerator 'tpu-v9-8'"),
])
def test_every_malformed_row_kind_names_file_and_line(tmp_path, cloud, row, message):
    root, line = _copy_with_row(tmp_path, cloud, row)
    with pytest.raises(CatalogError) as err:
        load_offerings(root)
    text = str(err.value)
    assert text.startswith(f"{root / cloud / 'vms.csv'}:{line}: ") and message in text and "\n" not in text


def test_unknown_accelerators_load_when_the_catalog_has_no_list(tmp_path):
    root, _ = _copy_with_row(tmp_path, "aws", "p5.48xlarge,Hopper100,8.0,192.0,2048.0,,98.32,,us-east-1,use1-az1")
    (root / "common" / "accelerators.csv").unlink()
    names = {o.accelerator for o in load_offerings(root)}
    assert "Hopper100" in names and "V100" in names


def test_tasks_match_accelerator_aliases_and_skip_spot_only_offerings():
    offerings = tuple(load_offerings(SKYPILOT))
    locations = sorted({o.location for o in offerings})
    catalog = Catalog(offerings, MatrixNetwork({(a, b): 0.01 for a in locations for b in locations},
                                               {(a, b): 1.0 for a in locations for b in locations}), "skypilot")
    dag = parse_dag({"tasks": [{"name": "t", "resources": {"accelerators": "nvidia-tesla-v100:1"}}]})
    assert {c.location for c in candidates_for(dag.tasks[0], catalog)} == {
        "aws:us-east-1", "azure:eastus", "gcp:us-central1"}
    spot_only = Catalog(tuple(o for o in offerings if o.instance_type == "c6i.2xlarge"), catalog.network)
    spot_only = Catalog(tuple(type(o)(**{**o.__dict__, "price": None}) for o in spot_only.offerings), catalog.network)
    cpu = parse_dag({"tasks": [{"name": "t", "resources": {"cpus": 4}}]}).tasks[0]
    with pytest.raises(NoFeasiblePlan, match="on-demand"):
        candidates_for(cpu, spot_only)
    spot = parse_dag({"tasks": [{"name": "t", "resources": {"cpus": 4, "use_spot": True}}]}).tasks[0]
    assert {c.location for c in candidates_for(spot, spot_only)} == {"aws:us-east-1"}


def test_locations_without_egress_prices_are_left_out_with_a_warning(data_root, caplog):
    with caplog.at_level("WARNING", logger="paperzoo.methods.sky_broker.catalog"):
        catalog = load_catalog(SKYPILOT, data_root=data_root)
    assert catalog.clouds == ["aws", "azure", "gcp"]  # lambda: no egress rule
    assert "lambda:us-east-1" in caplog.text and "left out" in caplog.text
    with pytest.raises(CatalogError, match="no offering is in a location with egress prices"):
        load_catalog(SKYPILOT, data_root=data_root, clouds=["lambda"])
