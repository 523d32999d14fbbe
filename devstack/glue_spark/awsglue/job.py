"""``awsglue.job.Job``: a job run's start (``init``) and end (``commit``), with job bookmarks.

``init(job_name, args)`` starts the run's bookmark session (see ``awsglue._local.bookmarks``):
the option is ``args["job_bookmark_option"]`` (what ``getResolvedOptions`` returns), else the
``--job-bookmark-option`` in ``sys.argv``, else ``job-bookmark-disable``; the run id is
``args["JOB_RUN_ID"]`` or the ``--JOB_RUN_ID`` of ``sys.argv``. ``commit()`` writes the
bookmark state of a ``job-bookmark-enable`` run (reads with ``job-bookmark-pause`` use the state
but never change it). ``--job-bookmark-from``/``--job-bookmark-to`` ranges are not supported:
a paused run with them reads from the last committed state, with a warning.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from awsglue._local import bookmarks
from awsglue._local.unsupported import unsupported


def _argv_value(name: str) -> str | None:
    argv = sys.argv[1:]
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class Job:
    @classmethod
    def continuation_options(cls):
        return ["--continuation-option", "continuation-enabled", "continuation-readonly", "continuation-ignore"]

    @classmethod
    def job_bookmark_options(cls):
        return ["--job-bookmark-option", "job-bookmark-enable", "job-bookmark-pause", "job-bookmark-disable"]

    @classmethod
    def job_bookmark_range_options(cls):
        return ["--job-bookmark-from", "--job-bookmark-to"]

    @classmethod
    def id_params(cls):
        return ["--JOB_NAME", "--JOB_ID", "--JOB_RUN_ID", "--SECURITY_CONFIGURATION"]

    @classmethod
    def encryption_type_options(cls):
        return ["--encryption-type", "sse-s3"]

    def __init__(self, glue_context):
        self._glue_context = glue_context
        self._session: bookmarks.BookmarkSession | None = None
        self._job_name: str | None = None

    def init(self, job_name: str, args: Mapping[str, Any] | None = None) -> None:
        args = dict(args or {})
        option = args.get("job_bookmark_option") or _argv_value("--job-bookmark-option")
        if option is None:
            continuation = args.get("continuation_option") or _argv_value("--continuation-option")
            options, legacy = self.job_bookmark_options(), self.continuation_options()
            option = options[legacy.index(continuation)] if continuation in legacy[1:] else bookmarks.DISABLE
        if option == bookmarks.PAUSE and (args.get("job_bookmark_from") or _argv_value("--job-bookmark-from")):
            print(
                "WARN --job-bookmark-from/--job-bookmark-to are not supported by local Glue runs: "
                "the paused run reads from the last committed bookmark",
                file=sys.stderr,
            )
        run_id = args.get("JOB_RUN_ID") or _argv_value("--JOB_RUN_ID")
        self._job_name = job_name
        self._session = bookmarks.start(job_name, option, run_id)

    def isInitialized(self) -> bool:
        return self._session is not None

    def commit(self) -> None:
        if self._session is None:
            print("WARN Job.commit() called before Job.init(): nothing to commit", file=sys.stderr)
            return
        self._session.commit()

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("Job", name)
