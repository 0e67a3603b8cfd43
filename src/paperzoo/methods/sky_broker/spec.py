"""Job specs: a SkyPilot-like YAML schema for a DAG of tasks.

A job file holds either one task (the keys of a task at the top level) or a DAG::

    name: train-pipeline
    objective: cost            # or: time (the DAG's finish time, i.e. its critical path)
    deadline_h: 12             # optional: the plan's finish time must not exceed this
    budget_usd: 200            # optional: the plan's total cost must not exceed this
    prefer_penalty: 0.05       # optional: cost/time surcharge on locations outside `prefer`
    tasks:
      - name: preprocess
        resources: {cpus: 8+, memory: 32+, cloud: aws}
        inputs: {location: aws:us-east-1, size_gb: 200}
        outputs: {size_gb: 50}
        runtime_h: 0.5
        max_runtime_s: 7200       # optional: stop and fail the task if it runs longer
        setup: pip install -r requirements.txt
        run: python preprocess.py
        env: {SHARDS: 16}
      - name: train
        depends_on: [preprocess]
        resources:
          accelerators: {V100: 1, A100: 1}   # any of these (name: count)
          use_spot: true
          regions: [aws:us-east-1, gcp:us-central1]
          blocked: [azure]
          prefer: [aws:us-east-1]
        runtime_h: {V100: 4.0, A100: 2.0}    # per accelerator; `default` for the rest
        paperzoo: {method: hgt, preset: tiny, set: {epochs: 3}}

Every value is checked here; a bad one raises :class:`SpecError` naming the file and the field
(``job.yaml: tasks[1].resources.cpus: ...``). Deviations from SkyPilot's schema: ``cpus: 8`` and
``cpus: 8+`` both mean "at least 8" (SkyPilot reads the first as exactly 8); data locations are
``cloud:region`` strings rather than bucket URLs; runtimes and data sizes are given here instead of
being profiled.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Objective = Literal["cost", "time"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LOCATION = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z0-9][a-z0-9-]*)?$")


class SpecError(ValueError):
    """A job spec is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class AcceleratorRequest:
    """``count`` accelerators of type ``name`` on every node."""

    name: str
    count: int


@dataclass(frozen=True)
class Resources:
    """What one node of a task needs, and where it may or should run."""

    cpus: float | None = None
    """Minimum vCPUs per node (None: any)."""
    memory_gib: float | None = None
    """Minimum memory per node in GiB (None: any)."""
    accelerators: tuple[AcceleratorRequest, ...] = ()
    """Acceptable accelerators (any one of them); empty: a CPU-only node."""
    use_spot: bool = False
    """Spot (preemptible) capacity instead of on-demand."""
    instance_type: str | None = None
    """Pin an instance type."""
    clouds: tuple[str, ...] = ()
    """Allowed clouds (empty: any)."""
    regions: tuple[str, ...] = ()
    """Allowed ``cloud:region`` locations (empty: any)."""
    blocked: tuple[str, ...] = ()
    """Forbidden ``cloud`` or ``cloud:region`` locations."""
    prefer: tuple[str, ...] = ()
    """Preferred ``cloud`` or ``cloud:region`` locations; others pay ``Dag.prefer_penalty``."""


@dataclass(frozen=True)
class DataSpec:
    """A data set a task reads or writes."""

    size_gb: float
    location: str | None = None
    """``cloud:region`` where the data lives (inputs) or must end up (outputs)."""


@dataclass(frozen=True)
class PaperzooJob:
    """A paperzoo training run launched as the task's command."""

    method: str
    preset: str = "tiny"
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One node of the DAG."""

    name: str
    resources: Resources = Resources()
    num_nodes: int = 1
    runtime_h: float = 1.0
    """Runtime estimate in hours for accelerators not in ``runtime_by_accelerator``."""
    runtime_by_accelerator: Mapping[str, float] = field(default_factory=dict)
    inputs: tuple[DataSpec, ...] = ()
    """External inputs (with a location); data from parent tasks travels along DAG edges."""
    outputs: DataSpec | None = None
    """What the task produces: its size is sent to each child; a location adds a final upload."""
    setup: str = ""
    run: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    paperzoo: PaperzooJob | None = None
    max_runtime_s: float | None = None
    """Wall-clock seconds an attempt may run before the broker stops it and fails the task (None: no limit)."""

    def runtime_for(self, accelerator: str | None) -> float:
        """Estimated hours on a node with ``accelerator`` (None for CPU nodes)."""
        if accelerator is not None:
            for name, hours in self.runtime_by_accelerator.items():
                if name.lower() == accelerator.lower():
                    return hours
        return self.runtime_h

    @property
    def output_gb(self) -> float:
        return self.outputs.size_gb if self.outputs else 0.0


@dataclass(frozen=True)
class Dag:
    """A job: tasks in topological order plus the optimisation goal and its limits."""

    name: str
    tasks: tuple[Task, ...]
    objective: Objective = "cost"
    deadline_h: float | None = None
    budget_usd: float | None = None
    prefer_penalty: float = 0.05

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"job {self.name!r} has no task {name!r}; tasks: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs in topological order of the child."""
        return [(p, t.name) for t in self.tasks for p in t.depends_on]

    def is_chain(self) -> bool:
        """True when every task but the first has exactly the previous task as its one parent."""
        return all(t.depends_on == ((self.tasks[i - 1].name,) if i else ()) for i, t in enumerate(self.tasks))


# ------------------------------------------------------------------------------------ parsing
_JOB_KEYS = {"name", "objective", "deadline_h", "budget_usd", "prefer_penalty", "tasks"}
_TASK_KEYS = {"name", "resources", "num_nodes", "runtime_h", "inputs", "outputs", "setup", "run",
              "env", "depends_on", "paperzoo", "max_runtime_s"}
_RES_KEYS = {"cpus", "memory", "accelerators", "use_spot", "spot", "instance_type", "cloud", "region",
             "clouds", "regions", "blocked", "prefer"}


def _fail(where: str, message: str) -> SpecError:
    return SpecError(f"{where}: {message}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__} {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise _fail(where, f"keys must be strings, got {bad[0]!r}")
    return value


def _known(value: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(value) - keys)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}" if where else unknown[0],
                    f"unknown field; known fields: {', '.join(sorted(keys))}")


def _number(value: Any, where: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _fail(where, f"expected a finite number, got {value!r}")
    if number < minimum or (strict and number == minimum):
        raise _fail(where, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return number


def _at_least(value: Any, where: str) -> float:
    """``8``, ``8.5`` or SkyPilot's ``"8+"``: a lower bound > 0."""
    if isinstance(value, str):
        text = value.strip().rstrip("+")
        try:
            value = float(text)
        except ValueError:
            raise _fail(where, f"expected a number or 'N+', got {value!r}") from None
    return _number(value, where, strict=True)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    text = _string(value, where)
    if not _NAME.match(text):
        raise _fail(where, f"{text!r} is not a valid name (letters, digits, '_', '.', '-')")
    return text


def _location(value: Any, where: str) -> str:
    text = _string(value, where).strip().lower()
    if not _LOCATION.match(text):
        raise _fail(where, f"expected 'cloud' or 'cloud:region' (e.g. aws:us-east-1), got {value!r}")
    return text


def _region_location(value: Any, where: str) -> str:
    text = _location(value, where)
    if ":" not in text:
        raise _fail(where, f"expected 'cloud:region' (e.g. gcp:us-central1), got {value!r}")
    return text


def _string_list(value: Any, where: str, item) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _fail(where, f"expected a list, got {value!r}")
    return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def _accelerators(value: Any, where: str) -> tuple[AcceleratorRequest, ...]:
    """``"V100"``, ``"V100:4"``, ``{V100: 4, A100: 4}`` or ``["V100:1", "A100:1"]`` (any of)."""
    if value is None:
        return ()
    items: list[tuple[str, Any, str]] = []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        items = [(k, v, f"{where}.{k}") for k, v in _mapping(value, where).items()]
    elif isinstance(value, (list, tuple)):
        for i, entry in enumerate(value):
            text = _string(entry, f"{where}[{i}]")
            name, _, count = text.partition(":")
            items.append((name, count or 1, f"{where}[{i}]"))
    else:
        raise _fail(where, f"expected 'NAME[:COUNT]', a list of them or a mapping NAME: COUNT, got {value!r}")
    out = []
    for name, count, item_where in items:
        name = name.strip()
        if not name:
            raise _fail(item_where, "empty accelerator name")
        if isinstance(count, str):
            try:
                count = float(count)
            except ValueError:
                raise _fail(item_where, f"accelerator count must be a whole number, got {count!r}") from None
        number = _number(count, item_where, strict=True)
        if not number.is_integer():
            raise _fail(item_where, f"accelerator count must be a whole number, got {count!r}")
        out.append(AcceleratorRequest(name, int(number)))
    if not out:
        raise _fail(where, "empty accelerator list (omit the field for a CPU-only task)")
    return tuple(out)


def parse_resources(value: Any, where: str) -> Resources:
    data = _mapping(value or {}, where)
    _known(data, _RES_KEYS, where)
    if "spot" in data and "use_spot" in data:
        raise _fail(f"{where}.spot", "give either spot or use_spot, not both")
    spot = data.get("use_spot", data.get("spot", False))
    if not isinstance(spot, bool):
        raise _fail(f"{where}.{'spot' if 'spot' in data else 'use_spot'}", f"expected true/false, got {spot!r}")
    clouds = _string_list(data.get("clouds", ()), f"{where}.clouds", _location)
    if "cloud" in data:
        clouds = clouds + (_location(data["cloud"], f"{where}.cloud"),)
    regions = _string_list(data.get("regions", ()), f"{where}.regions", _region_location)
    if "region" in data:
        regions = regions + (_region_location(data["region"], f"{where}.region"),)
    for i, cloud in enumerate(clouds):
        if ":" in cloud:
            raise _fail(f"{where}.clouds[{i}]", f"expected a cloud name, got {cloud!r} (use regions)")
    if clouds and regions:
        stray = [r for r in regions if r.split(":")[0] not in clouds]
        if stray:
            raise _fail(f"{where}.regions", f"{stray[0]} is outside the allowed clouds {list(clouds)}")
    return Resources(
        cpus=_at_least(data["cpus"], f"{where}.cpus") if data.get("cpus") is not None else None,
        memory_gib=_at_least(data["memory"], f"{where}.memory") if data.get("memory") is not None else None,
        accelerators=_accelerators(data.get("accelerators"), f"{where}.accelerators"),
        use_spot=spot,
        instance_type=_string(data["instance_type"], f"{where}.instance_type")
        if data.get("instance_type") is not None else None,
        clouds=clouds, regions=regions,
        blocked=_string_list(data.get("blocked", ()), f"{where}.blocked", _location),
        prefer=_string_list(data.get("prefer", ()), f"{where}.prefer", _location),
    )


def _data(value: Any, where: str, *, need_location: bool) -> DataSpec:
    data = _mapping(value, where)
    _known(data, {"location", "size_gb"}, where)
    if "size_gb" not in data:
        raise _fail(f"{where}.size_gb", "missing (the data size in GB)")
    location = data.get("location")
    if location is None and need_location:
        raise _fail(f"{where}.location", "missing (where the data lives, e.g. aws:us-east-1)")
    return DataSpec(size_gb=_number(data["size_gb"], f"{where}.size_gb"),
                    location=_region_location(location, f"{where}.location") if location is not None else None)


def _inputs(value: Any, where: str) -> tuple[DataSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return (_data(value, where, need_location=True),)
    if not isinstance(value, (list, tuple)):
        raise _fail(where, f"expected a mapping or a list of mappings, got {value!r}")
    return tuple(_data(v, f"{where}[{i}]", need_location=True) for i, v in enumerate(value))


def _runtime(value: Any, where: str) -> tuple[float, dict[str, float]]:
    if isinstance(value, Mapping):
        per = {k: _number(v, f"{where}.{k}", strict=True) for k, v in _mapping(value, where).items()}
        default = per.pop("default", None)
        if default is None:
            default = max(per.values()) if per else None
        if default is None:
            raise _fail(where, "empty mapping; give hours per accelerator and/or `default`")
        return default, per
    return _number(value, where, strict=True), {}


def _env(value: Any, where: str) -> dict[str, str]:
    out = {}
    for key, item in _mapping(value or {}, where).items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise _fail(f"{where}.{key}", "not a valid environment variable name")
        if isinstance(item, (dict, list)) or item is None:
            raise _fail(f"{where}.{key}", f"expected a string or number, got {item!r}")
        out[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def _paperzoo(value: Any, where: str) -> PaperzooJob:
    data = _mapping(value, where)
    _known(data, {"method", "preset", "set"}, where)
    if "method" not in data:
        raise _fail(f"{where}.method", "missing (a registered paperzoo method, e.g. hgt)")
    overrides = {k: str(v) for k, v in _mapping(data.get("set") or {}, f"{where}.set").items()}
    return PaperzooJob(method=_name(data["method"], f"{where}.method"),
                       preset=_name(data.get("preset", "tiny"), f"{where}.preset"), overrides=overrides)


def parse_task(value: Any, where: str, default_name: str) -> Task:
    data = _mapping(value, where)
    _known(data, _TASK_KEYS, where)
    runtime, per_acc = _runtime(data.get("runtime_h", 1.0), f"{where}.runtime_h")
    num_nodes = _number(data.get("num_nodes", 1), f"{where}.num_nodes", minimum=1)
    if not num_nodes.is_integer():
        raise _fail(f"{where}.num_nodes", f"expected a whole number, got {data['num_nodes']!r}")
    if data.get("paperzoo") is not None and data.get("run"):
        raise _fail(f"{where}.run", "give either run or paperzoo (which builds the command), not both")
    depends = data.get("depends_on", ())
    max_runtime = data.get("max_runtime_s")
    return Task(
        name=_name(data.get("name", default_name), f"{where}.name"),
        resources=parse_resources(data.get("resources"), f"{where}.resources"),
        num_nodes=int(num_nodes), runtime_h=runtime, runtime_by_accelerator=per_acc,
        inputs=_inputs(data.get("inputs"), f"{where}.inputs"),
        outputs=_data(data["outputs"], f"{where}.outputs", need_location=False)
        if data.get("outputs") is not None else None,
        setup=_string(data.get("setup") or "", f"{where}.setup"),
        run=_string(data.get("run") or "", f"{where}.run"),
        env=_env(data.get("env"), f"{where}.env"),
        depends_on=_string_list(depends, f"{where}.depends_on", _name),
        paperzoo=_paperzoo(data["paperzoo"], f"{where}.paperzoo") if data.get("paperzoo") is not None else None,
        max_runtime_s=_number(max_runtime, f"{where}.max_runtime_s", strict=True) if max_runtime is not None
        else None,
    )


def topological_order(tasks: list[Task], where: str) -> tuple[Task, ...]:
    """Tasks sorted so that parents come first (stable: file order among ready tasks)."""
    by_name: dict[str, Task] = {}
    for i, task in enumerate(tasks):
        if task.name in by_name:
            raise _fail(f"{where}[{i}].name", f"duplicate task name {task.name!r}")
        by_name[task.name] = task
    for i, task in enumerate(tasks):
        for j, parent in enumerate(task.depends_on):
            if parent not in by_name:
                raise _fail(f"{where}[{i}].depends_on[{j}]",
                            f"unknown task {parent!r}; tasks: {', '.join(by_name)}")
            if parent == task.name:
                raise _fail(f"{where}[{i}].depends_on[{j}]", "a task cannot depend on itself")
        if len(set(task.depends_on)) != len(task.depends_on):
            raise _fail(f"{where}[{i}].depends_on", "lists a task twice")
    done: list[Task] = []
    placed: set[str] = set()
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if set(t.depends_on) <= placed]
        if not ready:
            cycle = ", ".join(t.name for t in pending)
            raise _fail(where, f"the dependencies form a cycle among: {cycle}")
        for task in ready:
            done.append(task)
            placed.add(task.name)
        pending = [t for t in pending if t.name not in placed]
    return tuple(done)


def _default_name(source: str) -> str:
    """The job's name when the file gives none: the file's stem if usable, else ``job``."""
    stem = Path(source).stem
    return stem if _NAME.match(stem) else "job"


def parse_dag(value: Any, source: str = "<spec>") -> Dag:
    """Validate a parsed YAML document (one task or a DAG) into a :class:`Dag`."""
    try:
        data = _mapping(value, "job")
        if "tasks" in data:
            _known(data, _JOB_KEYS, "")
            raw_tasks = data["tasks"]
            if not isinstance(raw_tasks, list) or not raw_tasks:
                raise _fail("tasks", "expected a non-empty list of tasks")
            tasks = [parse_task(t, f"tasks[{i}]", f"task{i}") for i, t in enumerate(raw_tasks)]
            job_name = _name(data.get("name", _default_name(source)), "name")
        else:
            job_keys = {k: data[k] for k in data if k in _JOB_KEYS - {"name"}}
            task_data = {k: v for k, v in data.items() if k not in job_keys}
            _known(task_data, _TASK_KEYS, "")
            job_name = _name(data.get("name", _default_name(source)), "name")
            tasks = [parse_task(task_data, "task", job_name)]
            data = job_keys
        objective = data.get("objective", "cost")
        if objective not in ("cost", "time"):
            raise _fail("objective", f"expected 'cost' or 'time', got {objective!r}")
        deadline = data.get("deadline_h")
        budget = data.get("budget_usd")
        return Dag(
            name=job_name, tasks=topological_order(tasks, "tasks"), objective=objective,
            deadline_h=_number(deadline, "deadline_h", strict=True) if deadline is not None else None,
            budget_usd=_number(budget, "budget_usd", strict=True) if budget is not None else None,
            prefer_penalty=_number(data.get("prefer_penalty", 0.05), "prefer_penalty"),
        )
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def load_dag(path: str | Path) -> Dag:
    """Read and validate a job YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: job file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_dag(data, str(path))


def dag_to_dict(dag: Dag) -> dict[str, Any]:
    """The DAG back as a YAML-ready mapping (``parse_dag(dag_to_dict(d)) == d``)."""
    def res(r: Resources) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if r.cpus is not None:
            out["cpus"] = r.cpus
        if r.memory_gib is not None:
            out["memory"] = r.memory_gib
        if r.accelerators:
            out["accelerators"] = [f"{a.name}:{a.count}" for a in r.accelerators]
        if r.use_spot:
            out["use_spot"] = True
        if r.instance_type:
            out["instance_type"] = r.instance_type
        for key in ("clouds", "regions", "blocked", "prefer"):
            if getattr(r, key):
                out[key] = list(getattr(r, key))
        return out

    def task(t: Task) -> dict[str, Any]:
        out: dict[str, Any] = {"name": t.name, "resources": res(t.resources), "num_nodes": t.num_nodes,
                               "runtime_h": {**t.runtime_by_accelerator, "default": t.runtime_h}
                               if t.runtime_by_accelerator else t.runtime_h}
        if t.inputs:
            out["inputs"] = [{"location": d.location, "size_gb": d.size_gb} for d in t.inputs]
        if t.outputs:
            out["outputs"] = {"size_gb": t.outputs.size_gb,
                              **({"location": t.outputs.location} if t.outputs.location else {})}
        for key in ("setup", "run"):
            if getattr(t, key):
                out[key] = getattr(t, key)
        if t.env:
            out["env"] = dict(t.env)
        if t.depends_on:
            out["depends_on"] = list(t.depends_on)
        if t.max_runtime_s is not None:
            out["max_runtime_s"] = t.max_runtime_s
        if t.paperzoo:
            out["paperzoo"] = {"method": t.paperzoo.method, "preset": t.paperzoo.preset,
                               "set": dict(t.paperzoo.overrides)}
        return out

    out: dict[str, Any] = {"name": dag.name, "objective": dag.objective, "prefer_penalty": dag.prefer_penalty}
    if dag.deadline_h is not None:
        out["deadline_h"] = dag.deadline_h
    if dag.budget_usd is not None:
        out["budget_usd"] = dag.budget_usd
    out["tasks"] = [task(t) for t in dag.tasks]
    return out
