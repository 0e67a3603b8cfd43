"""Job state in a local SQLite database, so that ``status``, ``logs`` and ``down`` survive a restart
of the CLI (and can run while a detached broker works on the job).

Three tables: ``jobs`` (one row per launched DAG: spec, plan, status), ``tasks`` (one row per task:
where it finally ran, its provider handle, status) and ``attempts`` (every launch attempt, failed
or not, with its outcome: the failover audit trail). Each write is its own transaction; the
database runs in WAL mode so readers never block the broker.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    plan TEXT,
    options TEXT NOT NULL,
    workdir TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    job_id INTEGER NOT NULL REFERENCES jobs(job_id),
    task TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    placement TEXT,
    provider TEXT,
    handle TEXT,
    cost_usd REAL,
    recoveries INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (job_id, task)
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(job_id),
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    cloud TEXT, region TEXT, zone TEXT, instance_type TEXT, accelerator TEXT,
    use_spot INTEGER,
    provider TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    started REAL NOT NULL,
    ended REAL
);
"""

JOB_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "DRY_RUN")


class JobNotFound(KeyError):
    """No job with this id in the database."""


@dataclass(frozen=True)
class JobRow:
    job_id: int
    name: str
    status: str
    spec: dict[str, Any]
    plan: dict[str, Any] | None
    options: dict[str, Any]
    workdir: str
    error: str | None
    created: float
    updated: float


def default_home() -> Path:
    """``$PAPERZOO_SKY_HOME`` or ``~/.paperzoo/sky``: the database and the jobs' folders."""
    return Path(os.environ.get("PAPERZOO_SKY_HOME") or Path.home() / ".paperzoo" / "sky")


class JobDB:
    """The broker's SQLite database."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    # ----------------------------------------------------------------------------- jobs
    def create_job(self, name: str, spec: dict[str, Any], options: dict[str, Any], workdir_base: Path,
                   tasks: list[str]) -> int:
        now = time.time()
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (name, status, spec, options, workdir, created, updated) "
                "VALUES (?, 'PENDING', ?, ?, '', ?, ?)", (name, json.dumps(spec), json.dumps(options), now, now))
            job_id = int(cur.lastrowid)
            conn.execute("UPDATE jobs SET workdir = ? WHERE job_id = ?", (str(workdir_base / str(job_id)), job_id))
            conn.executemany(
                "INSERT INTO tasks (job_id, task, position, status, updated) VALUES (?, ?, ?, 'PENDING', ?)",
                [(job_id, t, i, now) for i, t in enumerate(tasks)])
        return job_id

    def job(self, job_id: int) -> JobRow:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id} in {self.path}")
        return _job_row(row)

    def jobs(self) -> list[JobRow]:
        with self._connect() as conn:
            return [_job_row(r) for r in conn.execute("SELECT * FROM jobs ORDER BY job_id")]

    def set_job(self, job_id: int, *, status: str | None = None, plan: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        fields, values = ["updated = ?"], [time.time()]
        if status is not None:
            fields.append("status = ?")
            values.append(status)
        if plan is not None:
            fields.append("plan = ?")
            values.append(json.dumps(plan))
        if error is not None:
            fields.append("error = ?")
            values.append(error)
        with self._connect() as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(fields)} WHERE job_id = ?", (*values, job_id))

    # ---------------------------------------------------------------------------- tasks
    def tasks(self, job_id: int) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM tasks WHERE job_id = ? ORDER BY position", (job_id,)).fetchall()
        out = []
        for r in rows:
            item = dict(r)
            item["placement"] = json.loads(item["placement"]) if item["placement"] else None
            item["handle"] = json.loads(item["handle"]) if item["handle"] else None
            out.append(item)
        return out

    def set_task(self, job_id: int, task: str, *, status: str, placement: dict[str, Any] | None = None,
                 provider: str | None = None, handle: dict[str, Any] | None = None,
                 cost_usd: float | None = None, recoveries: int | None = None) -> None:
        fields, values = ["status = ?", "updated = ?"], [status, time.time()]
        for name, value in (("placement", placement), ("handle", handle)):
            if value is not None:
                fields.append(f"{name} = ?")
                values.append(json.dumps(value))
        for name, value in (("provider", provider), ("cost_usd", cost_usd), ("recoveries", recoveries)):
            if value is not None:
                fields.append(f"{name} = ?")
                values.append(value)
        with self._connect() as conn:
            conn.execute(f"UPDATE tasks SET {', '.join(fields)} WHERE job_id = ? AND task = ?",
                         (*values, job_id, task))

    # ------------------------------------------------------------------------- attempts
    def start_attempt(self, job_id: int, task: str, attempt: int, placement: dict[str, Any],
                      provider: str) -> int:
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO attempts (job_id, task, attempt, cloud, region, zone, instance_type, accelerator, "
                "use_spot, provider, outcome, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'LAUNCHING', ?)",
                (job_id, task, attempt, placement["cloud"], placement["region"], placement["zone"],
                 placement["instance_type"], placement.get("accelerator"), int(bool(placement["use_spot"])),
                 provider, time.time()))
            return int(cur.lastrowid)

    def end_attempt(self, attempt_id: int, outcome: str, error: str | None = None, *, final: bool = True) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE attempts SET outcome = ?, error = ?, ended = ? WHERE attempt_id = ?",
                         (outcome, error, time.time() if final else None, attempt_id))

    def attempts(self, job_id: int, task: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM attempts WHERE job_id = ?" + (" AND task = ?" if task else "")
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY attempt_id", (job_id, task) if task else (job_id,)).fetchall()
        return [dict(r) for r in rows]


def _job_row(row: sqlite3.Row) -> JobRow:
    return JobRow(job_id=row["job_id"], name=row["name"], status=row["status"], spec=json.loads(row["spec"]),
                  plan=json.loads(row["plan"]) if row["plan"] else None, options=json.loads(row["options"]),
                  workdir=row["workdir"], error=row["error"], created=row["created"], updated=row["updated"])
