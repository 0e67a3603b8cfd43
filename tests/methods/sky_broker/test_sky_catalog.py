"""Catalog CSVs in SkyPilot's layout, the curated sample, and the measured network."""
import pytest

from paperzoo.data.roots import DataNotFoundError
from paperzoo.methods.sky_broker.catalog import (
    CATALOG_DIR,
    CatalogError,
    continent,
    load_catalog,
    load_network,
    read_vms_csv,
    transfer_hours,
)

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
