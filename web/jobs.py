"""Background jobs: a SQLite store under the instance folder and a small pool of worker threads.

Job state, progress and result live in `jobs.sqlite3` (WAL mode), so a restart loses nothing:
finished jobs stay, and jobs that were queued or running when the process stopped are marked
`interrupted` when the next one starts. Work runs in `workers` threads of the server process
(1 by default: TensorFlow already uses every core), fed by a bounded queue. Cancelling a queued
job means it never runs; a running job stops at its next progress callback, which raises
`JobCancelled`, or sooner: the work may register a `stop` (`progress.when_cancelled(stop)`, a
stoppable classifier's) that halts its computations at the next model pass. Progress is written at most `PROGRESS_INTERVAL` seconds apart.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger("egide.web")

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL = ("done", "failed", "cancelled", "interrupted")
PROGRESS_INTERVAL = 0.25  # seconds between two progress writes of one job

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    label TEXT NOT NULL DEFAULT '',
    result TEXT,
    error TEXT,
    artifacts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""


class JobCancelled(Exception):
    """Raised from a progress callback to stop a job that was cancelled while running."""


class QueueFull(Exception):
    """The queue holds as many jobs as it may; try again later. The refused job is not kept."""

    def __init__(self, job_id: str = ""):
        super().__init__(job_id)
        self.job_id = job_id


class JobStore:
    """Jobs in SQLite. One short-lived connection per operation, writes serialised by a lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "rerun_by" not in columns:  # a store from before re-runs were recorded
                db.execute("ALTER TABLE jobs ADD COLUMN rerun_by TEXT")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            db = self._connect()
            try:
                with db:
                    return db.execute(sql, args).rowcount
            finally:
                db.close()

    def create(self, kind: str, request: dict) -> str:
        job_id = uuid.uuid4().hex[:16]
        self._write(
            "INSERT INTO jobs (id, kind, state, request, created) VALUES (?, ?, 'queued', ?, ?)",
            (job_id, kind, json.dumps(request), time.time()),
        )
        return job_id

    def get(self, job_id: str) -> dict | None:
        db = self._connect()
        try:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            db.close()
        return _row(row) if row else None

    def list(self, limit: int = 50) -> list[dict]:
        db = self._connect()
        try:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        finally:
            db.close()
        return [_row(r) for r in rows]

    def start(self, job_id: str) -> bool:
        """Mark a queued job running; False if it is no longer queued (cancelled meanwhile)."""
        return self._write(
            "UPDATE jobs SET state = 'running', started = ? WHERE id = ? AND state = 'queued'",
            (time.time(), job_id),
        ) == 1

    def progress(self, job_id: str, done: int, total: int, label: str = "") -> None:
        self._write(
            "UPDATE jobs SET done = ?, total = ?, label = ? WHERE id = ? AND state = 'running'",
            (int(done), int(total), label, job_id),
        )

    def finish(self, job_id: str, state: str, *, result: dict | None = None, error: str | None = None,
               artifacts: list[str] | None = None) -> None:
        assert state in FINAL
        self._write(
            "UPDATE jobs SET state = ?, finished = ?, result = ?, error = ?, artifacts = ? "
            "WHERE id = ? AND state IN ('queued', 'running')",
            (state, time.time(), json.dumps(result) if result is not None else None, error,
             json.dumps(artifacts or []), job_id),
        )

    def discard(self, job_id: str) -> None:
        """Forget a job that never entered the queue (refused there): it never existed."""
        self._write("DELETE FROM jobs WHERE id = ? AND state = 'queued'", (job_id,))

    def delete(self, job_id: str) -> bool:
        """Forget a finished job (done, failed, cancelled or interrupted); False if it is still
        queued or running (cancel it first) or unknown."""
        return self._write("DELETE FROM jobs WHERE id = ? AND state NOT IN ('queued', 'running')",
                           (job_id,)) > 0

    def claim_rerun(self, old_id: str, new_id: str) -> str | None:
        """Record that `new_id` re-runs `old_id`; None if so, else the job that already does."""
        if self._write("UPDATE jobs SET rerun_by = ? WHERE id = ? AND rerun_by IS NULL", (new_id, old_id)) == 1:
            return None
        return (self.get(old_id) or {}).get("rerun_by")

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job at once; returns the state the job was in."""
        job = self.get(job_id)
        if job and job["state"] == "queued":
            self.finish(job_id, "cancelled", error="cancelled before it started")
        return job["state"] if job else None

    def mark_interrupted(self) -> int:
        """At start-up: jobs a previous process left queued or running will never finish."""
        return self._write(
            "UPDATE jobs SET state = 'interrupted', finished = ?, error = ? "
            "WHERE state IN ('queued', 'running')",
            (time.time(), "the server stopped before this job finished; submit it again"),
        )


def _row(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["request"] = json.loads(job["request"])
    job["result"] = json.loads(job["result"]) if job["result"] else None
    job["artifacts"] = json.loads(job["artifacts"] or "[]")
    return job


class JobRunner:
    """Worker threads that take job ids from a bounded queue and run them."""

    def __init__(self, store: JobStore, work: Callable[[dict, Callable], tuple[dict, list[str]]],
                 *, workers: int = 1, queue_size: int = 16):
        self.store, self.work = store, work
        self.queue: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        self._cancelled: set[str] = set()
        self._stops: dict[str, list[Callable[[], None]]] = {}  # job id -> what stops its computations
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, name=f"egide-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self.threads:
            t.start()

    def submit(self, kind: str, request: dict, prepare: Callable[[str], None] | None = None) -> str:
        """Store and queue a job; `prepare(job_id)` runs before it is queued (so before it can start)."""
        job_id = self.store.create(kind, request)
        if prepare is not None:
            try:
                prepare(job_id)
            except Exception as exc:
                self.store.finish(job_id, "failed", error=f"could not be prepared: {type(exc).__name__}: {exc}")
                raise
        try:
            self.queue.put_nowait(job_id)
        except queue.Full:
            self.store.discard(job_id)  # a refused job leaves no ghost to re-run
            raise QueueFull(job_id) from None
        return job_id

    def cancel(self, job_id: str) -> str | None:
        with self._lock:
            self._cancelled.add(job_id)
            stops = self._stops.pop(job_id, [])
        for stop in stops:  # a running job stops at its next model pass, not at the end of a batch
            stop()
        return self.store.cancel(job_id)

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout)

    def _is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(job_id)
            finally:
                self.queue.task_done()

    def _run(self, job_id: str) -> None:
        if self._is_cancelled(job_id) or not self.store.start(job_id):
            with self._lock:
                self._cancelled.discard(job_id)
                self._stops.pop(job_id, None)
            return
        job = self.store.get(job_id)
        last = [0.0]

        def progress(done: int, total: int, label: str = "") -> None:
            if self._is_cancelled(job_id):
                raise JobCancelled(job_id)
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.store.progress(job_id, done, total, label)

        def when_cancelled(stop: Callable[[], None]) -> None:
            """The work registers how to stop its computations (a stoppable classifier's stop)."""
            with self._lock:
                cancelled = job_id in self._cancelled
                if not cancelled:
                    self._stops.setdefault(job_id, []).append(stop)
            if cancelled:
                stop()

        progress.when_cancelled = when_cancelled
        try:
            result, artifacts = self.work(job, progress)
        except Exception as exc:  # the job fails; the server and the other jobs carry on
            if isinstance(exc, JobCancelled) or self._is_cancelled(job_id):  # stopped mid-batch too
                self.store.finish(job_id, "cancelled", error="cancelled while running")
                return
            from egide.core.errors import EgideError

            if not isinstance(exc, EgideError):
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self.store.finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}"
                              if not isinstance(exc, EgideError) else str(exc))
        else:
            self.store.finish(job_id, "done", result=result, artifacts=artifacts)
        finally:
            with self._lock:
                self._cancelled.discard(job_id)
                self._stops.pop(job_id, None)
