"""Job spec parsing: the schema, and one clear error naming the field for each kind of bad input."""
from pathlib import Path

import pytest

from paperzoo.methods.sky_broker.spec import AcceleratorRequest, SpecError, dag_to_dict, load_dag, parse_dag

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "sky"


def test_examples_parse_into_topologically_ordered_dags():
    dag = load_dag(EXAMPLES / "train.yaml")
    assert dag.names == ["preprocess", "train", "eval"] and dag.is_chain()
    train = dag.task("train")
    assert set(train.resources.accelerators) == {AcceleratorRequest(n, 1) for n in ("V100", "A100", "A10G", "L4")}
    assert train.resources.use_spot and train.runtime_for("a100") == 2.0
    assert dag.task("preprocess").resources.cpus == 8 and dag.task("preprocess").inputs[0].location == "aws:us-east-1"
    tiny = load_dag(EXAMPLES / "paperzoo_tiny.yaml")
    assert not tiny.is_chain() and tiny.edges == [("conve", "subnet"), ("conve", "hgt")]
    assert tiny.task("hgt").paperzoo.method == "hgt"


def test_single_task_document_and_sugar():
    dag = parse_dag({"name": "one", "objective": "time", "run": "echo hi",
                     "resources": {"accelerators": "V100:4", "cloud": "gcp", "region": "gcp:us-central1",
                                   "spot": True, "blocked": ["gcp:us-east1"]},
                     "runtime_h": {"V100": 2, "default": 3}, "env": {"N": 3, "FLAG": True}})
    task = dag.tasks[0]
    assert dag.objective == "time" and task.name == "one"
    assert task.resources.accelerators == (AcceleratorRequest("V100", 4),)
    assert task.resources.clouds == ("gcp",) and task.resources.regions == ("gcp:us-central1",)
    assert task.runtime_for("V100") == 2 and task.runtime_for(None) == 3
    assert task.env == {"N": "3", "FLAG": "true"}


def test_round_trip_through_dict():
    dag = load_dag(EXAMPLES / "train.yaml")
    assert parse_dag(dag_to_dict(dag)) == dag


@pytest.mark.parametrize("data, field", [
    ({"tasks": [{"name": "a", "resources": {"gpus": 1}}]}, "tasks[0].resources.gpus: unknown field"),
    ({"tasks": [{"name": "a", "resources": {"cpus": "many"}}]}, "tasks[0].resources.cpus: expected a number"),
    ({"tasks": [{"name": "a", "resources": {"accelerators": "V100:1.5"}}]}, "tasks[0].resources.accelerators[0]"),
    ({"tasks": [{"name": "a", "runtime_h": -1}]}, "tasks[0].runtime_h: must be > 0"),
    ({"tasks": [{"name": "a", "depends_on": ["zzz"]}]}, "tasks[0].depends_on[0]: unknown task 'zzz'"),
    ({"tasks": [{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}]}, "cycle among: a, b"),
    ({"tasks": [{"name": "a"}, {"name": "a"}]}, "tasks[1].name: duplicate task name"),
    ({"tasks": [{"name": "a", "inputs": {"size_gb": 3}}]}, "tasks[0].inputs.location: missing"),
    ({"tasks": [{"name": "a", "inputs": {"location": "aws", "size_gb": 3}}]}, "tasks[0].inputs.location: expected"),
    ({"tasks": [{"name": "a", "run": "x", "paperzoo": {"method": "hgt"}}]}, "tasks[0].run: give either"),
    ({"tasks": [{"name": "a", "resources": {"clouds": ["aws"], "regions": ["gcp:us-central1"]}}]},
     "tasks[0].resources.regions: gcp:us-central1 is outside"),
    ({"objective": "speed", "tasks": [{"name": "a"}]}, "objective: expected 'cost' or 'time'"),
    ({"tasks": []}, "tasks: expected a non-empty list"),
    ({"tasks": [{"name": "a", "env": {"1X": "v"}}]}, "tasks[0].env.1X"),
])
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(SpecError) as err:
        parse_dag(data, "job.yaml")
    assert str(err.value).startswith("job.yaml: ") and field in str(err.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntasks:\n  - name: a\n    run: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml \(line \d+\): not valid YAML"):
        load_dag(path)
    with pytest.raises(SpecError, match="job file not found"):
        load_dag(tmp_path / "missing.yaml")
