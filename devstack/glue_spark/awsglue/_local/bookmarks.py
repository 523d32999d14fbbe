"""Job bookmarks for local runs: which S3 objects each ``transformation_ctx`` has processed.

The state of a job is one file, ``$GLUE_LOCAL_STATE_DIR/bookmarks/<job name>.json``, holding
AWS's ``JobBookmarkEntry``::

    {"JobName": ..., "Version": 3, "Run": 3, "Attempt": 0,
     "PreviousRunId": "jr_...", "RunId": "jr_...",
     "JobBookmark": "{\\"<transformation_ctx>\\": {\\"objects\\": {\\"s3://bucket/key\\": \\"<etag>\\"}}}"}

(the emulator answers GetJobBookmark from it and ResetJobBookmark deletes it). ``Job.init`` reads
it into a process-wide session; an S3 read (``from_options`` or ``from_catalog``) with a
non-empty ``transformation_ctx`` then skips the objects the last committed run recorded for that
ctx (an object whose ETag changed since counts as new) and, with ``job-bookmark-enable``,
records what it read; ``Job.commit`` writes the new entry (``Run`` and ``Version`` + 1,
``RunId``, ``PreviousRunId``), keeping the objects of earlier runs. ``job-bookmark-pause`` reads
with the state and records nothing; ``job-bookmark-disable`` (the default) ignores it.

Without ``GLUE_LOCAL_STATE_DIR`` (a script run outside the stack) the state lives in a folder
of the system's temp dir, with a warning.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ENABLE, PAUSE, DISABLE = "job-bookmark-enable", "job-bookmark-pause", "job-bookmark-disable"
OPTIONS = (ENABLE, PAUSE, DISABLE)
STATE_DIR_ENV = "GLUE_LOCAL_STATE_DIR"


_warned: set[str] = set()


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    fallback = Path(tempfile.gettempdir()) / "awsglue-local-state"
    if str(fallback) not in _warned:
        _warned.add(str(fallback))
        print(f"WARN {STATE_DIR_ENV} is not set: job bookmarks are kept in {fallback}", file=sys.stderr)
    return fallback


def bookmark_file(job_name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_name) or "_"
    return state_dir() / "bookmarks" / f"{safe}.json"


def read_entry(job_name: str) -> dict[str, Any] | None:
    path = bookmark_file(job_name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


class BookmarkSession:
    """The bookmark state of one job run, from ``Job.init`` to ``Job.commit``."""

    def __init__(self, job_name: str, option: str, run_id: str | None = None):
        if option not in OPTIONS:
            raise ValueError(f"--job-bookmark-option must be one of {', '.join(OPTIONS)}, not {option!r}")
        self.job_name = job_name
        self.option = option
        self.run_id = run_id or f"jr_{uuid.uuid4().hex}"
        self.previous = read_entry(job_name) if option != DISABLE else None
        self._processed: dict[str, dict[str, str]] = {}
        if self.previous:
            self._processed = json.loads(self.previous.get("JobBookmark") or "{}")
        self._pending: dict[str, dict[str, str]] = {}
        self.committed = False

    @property
    def active(self) -> bool:
        return self.option != DISABLE

    def processed(self, transformation_ctx: str) -> dict[str, str]:
        """The objects (s3 path -> tag) the last committed run recorded for this ctx."""
        if not self.active or not transformation_ctx:
            return {}
        return dict(self._processed.get(transformation_ctx, {}).get("objects", {}))

    def unprocessed(self, transformation_ctx: str, objects: dict[str, str]) -> set[str]:
        """The paths among ``objects`` (path -> tag) that are new or changed since the last run."""
        done = self.processed(transformation_ctx)
        return {path for path, tag in objects.items() if done.get(path) != tag}

    def record(self, transformation_ctx: str, objects: dict[str, str]) -> None:
        """Note the objects a read processed (only with job-bookmark-enable and a ctx)."""
        if self.option != ENABLE or not transformation_ctx:
            return
        self._pending.setdefault(transformation_ctx, {}).update(objects)

    def commit(self) -> None:
        """Write the new entry (job-bookmark-enable only); later commits of the run do nothing."""
        if self.option != ENABLE or self.committed:
            return
        state = {ctx: {"objects": dict(value.get("objects", {}))} for ctx, value in self._processed.items()}
        for ctx, objects in self._pending.items():
            state.setdefault(ctx, {"objects": {}})["objects"].update(objects)
        previous = self.previous or {}
        entry = {
            "JobName": self.job_name,
            "Version": int(previous.get("Version", 0)) + 1,
            "Run": int(previous.get("Run", 0)) + 1,
            "Attempt": 0,
            "PreviousRunId": previous.get("RunId"),
            "RunId": self.run_id,
            "JobBookmark": json.dumps(state, sort_keys=True),
        }
        path = bookmark_file(self.job_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        temporary.write_text(json.dumps(entry, indent=2))
        os.replace(temporary, path)
        self.committed = True


_current: BookmarkSession | None = None


def start(job_name: str, option: str, run_id: str | None = None) -> BookmarkSession:
    global _current
    _current = BookmarkSession(job_name, option, run_id)
    return _current


def current() -> BookmarkSession | None:
    """The session of the job initialised in this process (None before ``Job.init``)."""
    return _current


def clear() -> None:
    global _current
    _current = None
