"""The Ray provider against a real local Ray head (loopback, 1 CPU), and the paperzoo jobs DAG."""
import socket
from pathlib import Path

import pytest

from paperzoo.methods.sky_broker.broker import job_logs
from paperzoo.methods.sky_broker.providers import RayProvider
from paperzoo.methods.sky_broker.spec import load_dag, parse_dag

ray = pytest.importorskip("ray", reason="the ray provider needs `pip install 'ray[default]'` (extra: sky)")
pytest.importorskip("ray.job_submission", reason="Ray's job submission API needs ray[default]")
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "sky"
# A launch submits a job to Ray; the first submissions of a fresh head start its job-supervisor actors,
# which takes well over the 5 s the other broker tests allow on a busy 2-core machine.
RAY_LAUNCH_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A Ray head started by this module on 127.0.0.1 (and shut down by it)."""
    context = ray.init(num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=_free_port(),
                       _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        yield f"http://{context.dashboard_url}"
    finally:
        ray.shutdown()


def test_dag_runs_on_ray_with_logs_and_status(ray_address, cpu_catalog, make_broker, db):
    dag = parse_dag({"name": "ray-dag", "tasks": [
        {"name": "a", "run": "echo hello-from-$SKY_TASK on $SKY_CLOUD", "outputs": {"size_gb": 1}},
        {"name": "b", "depends_on": ["a"], "run": "echo second $GREETING", "env": {"GREETING": "hi"}}]})
    job = make_broker(cpu_catalog, backend="ray", ray_address=ray_address,
                       attempt_timeout_s=RAY_LAUNCH_TIMEOUT_S).launch(dag)
    assert db.job(job).status == "SUCCEEDED"
    tasks = db.tasks(job)
    assert [t["provider"] for t in tasks] == ["ray", "ray"]
    assert all(t["handle"]["submission_id"].startswith("raysubmit_") for t in tasks)
    logs = job_logs(db, job)
    assert "hello-from-a on a" in logs and "second hi" in logs


def test_ray_failure_and_stop(ray_address, cpu_catalog, make_broker, db):
    job = make_broker(cpu_catalog, backend="ray", ray_address=ray_address,
                       attempt_timeout_s=RAY_LAUNCH_TIMEOUT_S).launch(
        parse_dag({"tasks": [{"name": "t", "run": "echo bad; exit 4"}]}))
    assert db.job(job).status == "FAILED" and "bad" in db.job(job).error
    assert RayProvider(ray_address).address == ray_address


@pytest.mark.slow
def test_three_paperzoo_tiny_jobs_on_local_and_ray(ray_address, cpu_catalog, make_broker, db):
    """Issue 7, item 4 (minutes on 2 cores): conve -> {subnet_laplace, hgt} tiny runs as one DAG."""
    dag = load_dag(EXAMPLES / "paperzoo_tiny.yaml")
    for backend in ("local", "ray"):
        job = make_broker(cpu_catalog, backend=backend, ray_address=ray_address,
                           attempt_timeout_s=RAY_LAUNCH_TIMEOUT_S).launch(dag)
        assert db.job(job).status == "SUCCEEDED", job_logs(db, job)
        workdir = Path(db.job(job).workdir)
        for task in dag.names:
            assert (workdir / task / "run" / "metrics.json").is_file()
