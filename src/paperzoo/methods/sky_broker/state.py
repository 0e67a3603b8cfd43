"""Job state in a local SQLite database, so that ``status``, ``logs``, ``down`` and ``recover`` survive
a restart of the CLI, or the death of the broker (and can run while a detached broker works on the job).

Three tables: ``jobs`` (one row per launched DAG: spec, plan, status, and the pid + start time of
the broker process running it), ``tasks`` (one row per task: where it finally ran, its provider
handle, status, error) and ``attempts`` (every launch attempt, failed or not, with its outcome and
handle: the failover audit trail). Every state transition is one transaction (``BEGIN IMMEDIATE``,
so a read-then-write such as :meth:`JobDB.claim_job` cannot interleave with another writer); pass
``tx=`` from :meth:`JobDB.transaction` to group several updates into one. The database runs in WAL
mode with a busy timeout, so readers never block the broker and writers wait rather than fail.
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
    updated REAL NOT NULL,
    broker_pid INTEGER,
    broker_start TEXT
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
    error TEXT,
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
    handle TEXT,
    started REAL NOT NULL,
    ended REAL
);
"""
# columns added after the first release: (table, column, type); old databases gain them on open
_ADDED_COLUMNS = (("jobs", "broker_pid", "INTEGER"), ("jobs", "broker_start", "TEXT"),
                  ("tasks", "error", "TEXT"), ("attempts", "handle", "TEXT"))
BUSY_TIMEOUT_S = 30.0

JOB_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "DRY_RUN")
"""Job states that never change again. ``INTERRUPTED`` (the broker died) is not one of them:
``paperzoo sky recover`` continues such a job."""


class JobNotFound(KeyError):
    """No job with this id in the database."""


class JobBusy(RuntimeError):
    """Another live broker process is running this job."""


def process_start_time(pid: int) -> str | None:
    """Start time of a live (not zombie) process ``pid`` in clock ticks since boot (Linux); None when
    no such process runs. Stored next to a pid, it tells a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has exited; only its parent has not reaped it
        return None
    return fields[19]


def process_alive(pid: int | None, start: str | None) -> bool:
    """True when process ``pid`` runs and is the one that started at ``start``."""
    return pid is not None and start is not None and process_start_time(int(pid)) == start


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
    broker_pid: int | None = None
    """The process running the job now (None: no broker holds it)."""
    broker_start: str | None = None

    @property
    def broker_alive(self) -> bool:
        """True while the broker process that claimed the job still runs."""
        return process_alive(self.broker_pid, self.broker_start)


def default_home() -> Path:
    """``$PAPERZOO_SKY_HOME`` or ``~/.paperzoo/sky``: the database and the jobs' folders."""
    return Path(os.environ.get("PAPERZOO_SKY_HOME") or Path.home() / ".paperzoo" / "sky")


class JobDB:
    """The broker's SQLite database."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._open()
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the database file
            conn.executescript(SCHEMA)  # idempotent (IF NOT EXISTS)
        finally:
            conn.close()
        if self._missing_columns(None):  # an older database: add them (once, under the write lock)
            with self.transaction() as conn:
                for table, column, kind in self._missing_columns(conn):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _missing_columns(self, conn: sqlite3.Connection | None) -> list[tuple[str, str, str]]:
        if conn is None:
            with self._connect() as read:
                return self._missing_columns(read)
        have = {table: {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
                for table in {t for t, _, _ in _ADDED_COLUMNS}}
        return [(t, c, k) for t, c, k in _ADDED_COLUMNS if c not in have[t]]

    def _open(self) -> sqlite3.Connection:
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    @staticmethod
    @contextmanager
    def _begin(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: every update given ``tx=`` this connection commits together, or
        none does (a broker killed half-way leaves the database as it was before)."""
        conn = self._open()
        try:
            with self._begin(conn):
                yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self, tx: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        if tx is not None:
            yield tx
        else:
            with self.transaction() as conn:
                yield conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (WAL: sees the last committed state, never blocks a writer)."""
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    # ----------------------------------------------------------------------------- jobs
    def create_job(self, name: str, spec: dict[str, Any], options: dict[str, Any], workdir_base: Path,
                   tasks: list[str]) -> int:
        """Record a PENDING job and its PENDING tasks; returns the job id."""
        now = time.time()
        with self.transaction() as conn:
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
                error: str | None = None, release: bool = False, tx: sqlite3.Connection | None = None) -> None:
        """Update a job; ``release`` also clears its broker (the claiming process is done with it)."""
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
        if release:
            fields += ["broker_pid = NULL", "broker_start = NULL"]
        with self._write(tx) as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(fields)} WHERE job_id = ?", (*values, job_id))

    def claim_job(self, job_id: int, pid: int | None = None) -> None:
        """Record process ``pid`` (default: this one) as the job's broker, atomically; JobBusy when
        another live broker holds it. A dead broker's claim is taken over."""
        pid = os.getpid() if pid is None else pid
        start = process_start_time(pid)
        with self.transaction() as conn:
            row = conn.execute("SELECT broker_pid, broker_start FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id} in {self.path}")
            if process_alive(row["broker_pid"], row["broker_start"]):
                raise JobBusy(f"job {job_id} is being run by broker process {row['broker_pid']}; "
                              f"stop it first (paperzoo sky down {job_id}) or wait for it")
            conn.execute("UPDATE jobs SET broker_pid = ?, broker_start = ?, error = NULL, updated = ? "
                         "WHERE job_id = ?", (pid, start, time.time(), job_id))

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
                 cost_usd: float | None = None, recoveries: int | None = None, error: str | None = None,
                 tx: sqlite3.Connection | None = None) -> None:
        """Update a task (fields left None keep their value; the error is cleared unless given)."""
        fields, values = ["status = ?", "updated = ?", "error = ?"], [status, time.time(), error]
        for name, value in (("placement", placement), ("handle", handle)):
            if value is not None:
                fields.append(f"{name} = ?")
                values.append(json.dumps(value))
        for name, value in (("provider", provider), ("cost_usd", cost_usd), ("recoveries", recoveries)):
            if value is not None:
                fields.append(f"{name} = ?")
                values.append(value)
        with self._write(tx) as conn:
            conn.execute(f"UPDATE tasks SET {', '.join(fields)} WHERE job_id = ? AND task = ?",
                         (*values, job_id, task))

    # ------------------------------------------------------------------------- attempts
    def start_attempt(self, job_id: int, task: str, attempt: int, placement: dict[str, Any],
                      provider: str, tx: sqlite3.Connection | None = None) -> int:
        """Record a LAUNCHING attempt; returns its id."""
        with self._write(tx) as conn:
            cur = conn.execute(
                "INSERT INTO attempts (job_id, task, attempt, cloud, region, zone, instance_type, accelerator, "
                "use_spot, provider, outcome, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'LAUNCHING', ?)",
                (job_id, task, attempt, placement["cloud"], placement["region"], placement["zone"],
                 placement["instance_type"], placement.get("accelerator"), int(bool(placement["use_spot"])),
                 provider, time.time()))
            return int(cur.lastrowid)

    def end_attempt(self, attempt_id: int, outcome: str, error: str | None = None, *, final: bool = True,
                    handle: dict[str, Any] | None = None, expect: str | None = None,
                    tx: sqlite3.Connection | None = None) -> bool:
        """Set an attempt's outcome (``final=False``: it goes on, e.g. RUNNING) and, if given, its
        handle. With ``expect`` only an attempt whose outcome is still ``expect`` changes (compare and
        set, for reconciliation racing another process); returns whether it changed."""
        fields, values = ["outcome = ?", "error = ?", "ended = ?"], [outcome, error, time.time() if final else None]
        if handle is not None:
            fields.append("handle = ?")
            values.append(json.dumps(handle))
        where, args = "attempt_id = ?", [attempt_id]
        if expect is not None:
            where += " AND outcome = ?"
            args.append(expect)
        with self._write(tx) as conn:
            cur = conn.execute(f"UPDATE attempts SET {', '.join(fields)} WHERE {where}", (*values, *args))
            return cur.rowcount == 1

    def attempts(self, job_id: int, task: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM attempts WHERE job_id = ?" + (" AND task = ?" if task else "")
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY attempt_id", (job_id, task) if task else (job_id,)).fetchall()
        out = []
        for r in rows:
            item = dict(r)
            item["handle"] = json.loads(item["handle"]) if item["handle"] else None
            out.append(item)
        return out


def _job_row(row: sqlite3.Row) -> JobRow:
    return JobRow(job_id=row["job_id"], name=row["name"], status=row["status"], spec=json.loads(row["spec"]),
                  plan=json.loads(row["plan"]) if row["plan"] else None, options=json.loads(row["options"]),
                  workdir=row["workdir"], error=row["error"], created=row["created"], updated=row["updated"],
                  broker_pid=row["broker_pid"], broker_start=row["broker_start"])
