"""Glue job runs that really run, inside moto's server.

moto accepts ``StartJobRun`` and runs nothing: its ``FakeJobRun`` walks STARTING -> RUNNING ->
SUCCEEDED as it is polled and reports ``ExecutionTime`` 123 whatever happened. ``install()``
replaces that, in the process that serves moto, with a run that:

- downloads the job's ``Command.ScriptLocation`` from the emulated S3;
- downloads the ``--extra-py-files`` (comma-separated ``s3://`` paths of ``.py`` files or
  ``.zip`` archives, from the job's default arguments or the run's) into the run's working
  directory and puts them on the script's ``PYTHONPATH``, as AWS Glue puts them on
  ``sys.path``: the ``.py`` files in one folder on it, each archive on it itself; a path that
  does not exist fails the run with an ``ErrorMessage`` naming it. The argument still reaches
  the script, as on AWS;
- chooses the runtime as AWS Glue does (``glue_spark/runtime.py``): a ``pythonshell`` job runs
  without Spark; a ``glueetl`` job whose code imports ``awsglue`` or ``pyspark`` runs on PySpark
  in local mode, its ``s3://``, ``s3a://`` and ``s3n://`` paths on the emulated S3; any other
  script keeps the plain Python path, which starts no JVM;
- runs it as its own process, in a process group of its own (so that stopping it stops Spark's
  JVM too), through ``glue_launcher.py``, with the arguments AWS Glue passes (``--JOB_NAME``,
  ``--JOB_RUN_ID``, ``--JOB_ID``, ``--TempDir``, ``--job-bookmark-option``, ``--job-language``),
  then the job's default arguments, the run's arguments and the non-overridable ones, in AWS
  Glue's precedence order;
- gives it ``AWS_ENDPOINT_URL``, a region and dummy credentials, so boto3 and pyarrow in the
  script reach the emulator, and ``GLUE_LOCAL_STATE_DIR``, the folder of this emulator's job
  bookmarks;
- reports RUNNING until the process ends, then SUCCEEDED, or FAILED with ``ErrorMessage`` set to
  the script's error (the last line of its traceback), or TIMEOUT, or STOPPED after
  ``BatchStopJobRun``; ``ExecutionTime`` is the real run time;
- streams stdout and stderr into CloudWatch Logs groups ``/aws-glue/jobs/output`` and
  ``/aws-glue/jobs/error`` (stream = run id) while it runs, which is where
  ``GlueJobOperator(verbose=True)`` reads them from.

``UpdateJob``, ``BatchStopJobRun``, ``GetJobBookmark`` and ``ResetJobBookmark``, which moto lacks,
are added (the operator's ``update_config=True`` and ``stop_job_run_on_kill`` use the first two;
the bookmarks are the files ``<GLUE_LOCAL_STATE_DIR>/bookmarks/<job name>.json`` that the local
``awsglue`` writes). ``MaxConcurrentRuns`` holds as on AWS because a run counts as active until its
process ends.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.glue import models as glue_models
from moto.glue.exceptions import ConcurrentRunsExceededException
from moto.glue.responses import GlueResponse
from moto.logs.exceptions import ResourceAlreadyExistsException
from moto.logs.models import logs_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import s3_backends

from devstack.glue_spark import runtime

LOG_GROUP_PREFIX = "/aws-glue/jobs"
OUTPUT_LOG_GROUP = f"{LOG_GROUP_PREFIX}/output"
ERROR_LOG_GROUP = f"{LOG_GROUP_PREFIX}/error"
LAUNCHER = Path(__file__).with_name("glue_launcher.py")
ACTIVE_STATES = {"STARTING", "RUNNING", "STOPPING"}
EXTRA_PY_FILES = "--extra-py-files"
# Folder names that are not valid module names, so a script cannot import them by accident.
EXTRA_MODULES_DIR = "extra-py-files"
EXTRA_ARCHIVES_DIR = "extra-py-archives"
SPARK_CONF_DIR = "spark-conf"
ERROR_FILE = "glue-error.txt"
# After the script's process ends, what it started (Spark's JVM) has this long to end too (it
# holds the output pipes until it does); then the process group is killed.
LINGER_SECONDS = 30
# After BatchStopJobRun's SIGTERM, how long the run's processes have before SIGKILL.
STOP_GRACE_SECONDS = 10

# Set by the emulator once it knows the address it serves on; the scripts call back into it.
_endpoint_url: str | None = None
# The folder this emulator shares with its job runs (GLUE_LOCAL_STATE_DIR): job bookmarks.
_state_dir: Path | None = None
_installed = False


def install(endpoint_url: str, state_dir: Path | None = None) -> None:
    """Patch moto so that Glue job runs execute their scripts. Idempotent.

    ``state_dir`` is where job bookmarks are kept; by default a temporary folder of this process,
    removed when it exits (moto's S3 lives in memory, so the bookmarks should not outlive it).
    """
    global _endpoint_url, _state_dir, _installed
    _endpoint_url = endpoint_url
    if state_dir is not None:
        _state_dir = Path(state_dir)
    elif _state_dir is None:
        _state_dir = Path(tempfile.mkdtemp(prefix="glue-local-state-"))
        atexit.register(shutil.rmtree, _state_dir, ignore_errors=True)
    _state_dir.mkdir(parents=True, exist_ok=True)
    if _installed:
        return
    glue_models.FakeJob.start_job_run = _start_job_run
    GlueResponse.batch_stop_job_run = _batch_stop_job_run_response
    GlueResponse.update_job = _update_job_response
    GlueResponse.get_job_bookmark = _get_job_bookmark_response
    GlueResponse.reset_job_bookmark = _reset_job_bookmark_response
    _installed = True


def state_dir() -> Path:
    """This emulator's GLUE_LOCAL_STATE_DIR (``install`` sets it)."""
    if _state_dir is None:
        raise RuntimeError("devstack.glue_jobs.install() has not been called")
    return _state_dir


class LocalJobRun(glue_models.FakeJobRun):
    """A job run backed by a real process; its state is the process's, not a polling counter."""

    def __init__(self, job: glue_models.FakeJob, arguments: dict[str, str], **run_options: Any):
        super().__init__(job_name=job.name, arguments=arguments, **run_options)
        self._state = "STARTING"
        self._job = job
        self._process: subprocess.Popen | None = None
        self._stop_requested = threading.Event()
        self.error_message: str | None = None
        self.runtime: str | None = None  # glue_spark.runtime.SPARK, PYTHON or PYTHON_SHELL, once chosen
        self.started_on = datetime.now(UTC)
        self.completed_on = None
        self._finished_at: float | None = None
        self._started_at = time.monotonic()

    # moto's ManagedState drives `status` from a polling counter; a real run has a real state.
    @property
    def status(self) -> str:
        return self._state

    @status.setter
    def status(self, value: str) -> None:
        self._state = value

    def advance(self) -> None:
        pass

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        end = self._finished_at or time.monotonic()
        data.update(
            JobRunState=self._state,
            ExecutionTime=int(round(end - self._started_at)),
            LogGroupName=LOG_GROUP_PREFIX,
            GlueVersion=self._job.glue_version or "5.0",
            StartedOn=self.started_on,
            LastModifiedOn=self.completed_on or self.started_on,
        )
        if self.completed_on is None:
            data.pop("CompletedOn", None)
        else:
            data["CompletedOn"] = self.completed_on
        if self.error_message:
            data["ErrorMessage"] = self.error_message
        return data

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"glue-{self.job_run_id[:12]}", daemon=True).start()

    def stop(self) -> None:
        self._stop_requested.set()
        if self._state in ACTIVE_STATES:
            self._state = "STOPPING"
        if self._process and self._process.poll() is None:
            self._signal_group(signal.SIGTERM)
            process = self._process

            def kill_if_still_running() -> None:
                try:
                    process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)

            threading.Thread(target=kill_if_still_running, daemon=True).start()

    def _signal_group(self, sig: signal.Signals) -> None:
        """Signal every process of the run: the script's and what it started (Spark's JVM)."""
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _run(self) -> None:
        logs = _JobRunLogs(self._job.backend.account_id, self._job.backend.region_name, self.job_run_id)
        try:
            with tempfile.TemporaryDirectory(prefix="glue-run-") as workdir:
                script = self._download_script(Path(workdir))
                python_path = self._download_extra_py_files(Path(workdir))
                self.runtime = runtime.choose_runtime(
                    (self._job.command or {}).get("Name"),
                    [script.read_bytes(), *runtime.python_sources(Path(entry) for entry in python_path)],
                )
                env = self._environment(python_path, Path(workdir))
                self._execute(script, workdir, logs, env)
        except Exception as error:  # the run must end in a state, whatever went wrong
            message = str(error) if isinstance(error, runtime.SparkRuntimeUnavailable) else None
            self._finish("FAILED", message or f"{type(error).__name__}: {error}")
            logs.write(ERROR_LOG_GROUP, [f"local Glue emulator: {self.error_message}"])

    def _download_script(self, workdir: Path) -> Path:
        location = (self._job.command or {}).get("ScriptLocation", "")
        if not location.startswith("s3://"):
            raise ValueError(f"job {self.job_name} has no s3:// ScriptLocation (got {location!r})")
        body = self._s3_object(location)
        if body is None:
            raise FileNotFoundError(f"script not found at {location}")
        script = workdir / (Path(location).name or "script.py")
        script.write_bytes(body)
        return script

    def _download_extra_py_files(self, workdir: Path) -> list[str]:
        """Download the run's ``--extra-py-files``; the entries to put on PYTHONPATH, in order."""
        arguments = self.arguments or {}
        value = arguments.get(EXTRA_PY_FILES, arguments.get(EXTRA_PY_FILES.removeprefix("--"), ""))
        entries: list[str] = []
        modules, archives = workdir / EXTRA_MODULES_DIR, workdir / EXTRA_ARCHIVES_DIR
        for location in filter(None, (part.strip() for part in str(value).split(","))):
            name = location.rsplit("/", 1)[-1]
            if not location.startswith("s3://") or not name.endswith((".py", ".zip")):
                raise ValueError(
                    f"{EXTRA_PY_FILES} {location!r} is not an s3:// path of a .py file or a .zip archive"
                )
            body = self._s3_object(location)
            if body is None:
                raise FileNotFoundError(f"{EXTRA_PY_FILES} {location} does not exist")
            module = name.endswith(".py")
            target = (modules if module else archives) / name
            if target.exists():  # a second file of that name would silently shadow the first
                raise ValueError(f"{EXTRA_PY_FILES} lists two files named {name}")
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(body)
            # The .py files share one folder on the path; an archive is a path entry itself.
            entry = str(modules if module else target)
            if entry not in entries:
                entries.append(entry)
        return entries

    def _s3(self):
        return s3_backends[self._job.backend.account_id]["aws"]

    def _s3_object(self, location: str) -> bytes | None:
        """The bytes of an ``s3://bucket/key`` object of the emulated S3; None if it does not exist."""
        bucket, _, key = location[len("s3://") :].partition("/")
        try:
            obj = self._s3().get_object(bucket, key)
        except MissingBucket:
            return None
        return None if obj is None else obj.value

    def _reserved_arguments(self) -> list[str]:
        """What AWS Glue passes before the job's own arguments: the run's name and ids, and
        --TempDir, --job-bookmark-option and --job-language unless the job or the run sets them."""
        arguments = self.arguments or {}
        argv = ["--JOB_NAME", self.job_name, "--JOB_RUN_ID", self.job_run_id, "--JOB_ID", self.job_run_id]
        defaults = {
            "--TempDir": runtime.DEFAULT_TEMP_DIR,
            "--job-bookmark-option": runtime.DEFAULT_BOOKMARK_OPTION,
            "--job-language": "python",
        }
        for name, value in defaults.items():
            if name not in arguments and name.removeprefix("--") not in arguments:
                argv += [name, value]
                if name == "--TempDir":
                    self._ensure_bucket(runtime.DEFAULT_TEMP_DIR_BUCKET)
        return argv

    def _ensure_bucket(self, name: str) -> None:
        s3 = self._s3()
        try:
            s3.get_bucket(name)
        except MissingBucket:
            s3.create_bucket(name, self._job.backend.region_name)

    def _command(self, script: Path) -> list[str]:
        argv = [sys.executable, "-u", str(LAUNCHER), str(script), *self._reserved_arguments()]
        for name, value in (self.arguments or {}).items():
            argv += [name if name.startswith("--") else f"--{name}", str(value)]
        return argv

    def _environment(self, python_path: Sequence[str], workdir: Path) -> dict[str, str]:
        env = dict(os.environ)
        path = list(python_path)
        if self.runtime in (runtime.SPARK, runtime.PYTHON_SHELL):
            path.append(str(runtime.GLUE_SPARK_DIR))  # awsglue (a Python shell job: awsglue.utils only)
        if path:
            env["PYTHONPATH"] = os.pathsep.join([*path, *filter(None, [env.get("PYTHONPATH")])])
        env.update(
            AWS_ENDPOINT_URL=_endpoint_url or "",
            AWS_DEFAULT_REGION=self._job.backend.region_name,
            AWS_REGION=self._job.backend.region_name,
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        env[runtime.RUNTIME_VARIABLE] = self.runtime or runtime.PYTHON
        if _state_dir is not None:
            env[runtime.STATE_DIR_VARIABLE] = str(_state_dir)
        env[runtime.ERROR_FILE_VARIABLE] = str(workdir / ERROR_FILE)
        if self.runtime == runtime.SPARK:
            runtime.java_executable()  # fail the run now, with the fix, rather than in PySpark's launcher
            defaults = runtime.spark_defaults(
                _endpoint_url or "",
                runtime.spark_jars(),
                env["AWS_ACCESS_KEY_ID"],
                env["AWS_SECRET_ACCESS_KEY"],
                self._job.backend.region_name,
            )
            conf_dir = runtime.write_spark_conf(workdir / SPARK_CONF_DIR, defaults)
            env = runtime.spark_environment(env, conf_dir)
        return env

    def _execute(self, script: Path, workdir: str, logs: _JobRunLogs, env: dict[str, str]) -> None:
        if self._stop_requested.is_set():
            self._finish("STOPPED")
            return
        self._process = subprocess.Popen(
            self._command(script),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own process group: stopping the run stops all it started
        )
        self._state = "RUNNING"
        if self._stop_requested.is_set():  # BatchStopJobRun came while the process was starting
            self._signal_group(signal.SIGTERM)
        stderr_tail: list[str] = []
        pumps = [
            threading.Thread(target=logs.pump, args=(self._process.stdout, OUTPUT_LOG_GROUP, None)),
            threading.Thread(target=logs.pump, args=(self._process.stderr, ERROR_LOG_GROUP, stderr_tail)),
        ]
        for pump in pumps:
            pump.start()
        timeout_minutes = self.timeout or self._job.timeout
        try:
            exit_code = self._process.wait(timeout=timeout_minutes * 60 if timeout_minutes else None)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._process.wait()
            self._end_process_group(pumps)
            self._finish("TIMEOUT", f"Job run timed out after {timeout_minutes} minutes")
            return
        self._end_process_group(pumps)
        if self._stop_requested.is_set():
            self._finish("STOPPED")
        elif exit_code == 0:
            self._finish("SUCCEEDED")
        else:
            self._finish("FAILED", _error_message(Path(workdir) / ERROR_FILE, stderr_tail, exit_code))

    def _end_process_group(self, pumps: Sequence[threading.Thread]) -> None:
        """Once the script's process has ended: wait for the rest of its group (Spark's JVM ends
        when its Python driver does) to close the output pipes, killing it if it lingers."""
        deadline = time.monotonic() + (STOP_GRACE_SECONDS if self._stop_requested.is_set() else LINGER_SECONDS)
        for pump in pumps:
            pump.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(pump.is_alive() for pump in pumps):
            self._signal_group(signal.SIGKILL)
        for pump in pumps:
            pump.join()

    def _finish(self, state: str, error_message: str | None = None) -> None:
        self._finished_at = time.monotonic()
        self.completed_on = datetime.now(UTC)
        self.error_message = error_message
        self._state = state


def _error_message(error_file: Path, stderr_tail: list[str], exit_code: int) -> str:
    """The launcher's record of the script's exception, else the last line of its error output."""
    try:
        recorded = error_file.read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    return recorded or _error_from_stderr(stderr_tail, exit_code)


def _error_from_stderr(stderr_tail: list[str], exit_code: int) -> str:
    """The script's error as Glue reports it: the last line of the traceback, or the exit code."""
    lines = [line.strip() for line in stderr_tail if line.strip()]
    if not lines:
        return f"script exited with code {exit_code}"
    return lines[-1][:2048]


class _JobRunLogs:
    """Writes a run's output into moto's CloudWatch Logs backend, as Glue's continuous logging does."""

    _lock = threading.Lock()

    def __init__(self, account_id: str, region: str, stream: str):
        self._backend = logs_backends[account_id][region]
        self._stream = stream

    def _ensure_stream(self, group: str) -> None:
        with self._lock:
            try:
                self._backend.create_log_group(group, {})
            except ResourceAlreadyExistsException:
                pass
            if self._stream not in self._backend.groups[group].streams:
                self._backend.create_log_stream(group, self._stream)

    def write(self, group: str, lines: list[str]) -> None:
        if not lines:
            return
        self._ensure_stream(group)
        now = int(time.time() * 1000)
        with self._lock:
            self._backend.put_log_events(group, self._stream, [{"timestamp": now, "message": line} for line in lines])

    def pump(self, pipe, group: str, tail: list[str] | None) -> None:
        """Copy a pipe into the log group line by line, flushing at least every 0.2 s."""
        self._ensure_stream(group)
        pending: list[str] = []
        last_flush = time.monotonic()
        for line in pipe:
            line = line.rstrip("\n")
            pending.append(line)
            if tail is not None:
                tail.append(line)
                del tail[:-50]
            if len(pending) >= 200 or time.monotonic() - last_flush > 0.2:
                self.write(group, pending)
                pending, last_flush = [], time.monotonic()
        self.write(group, pending)


def _start_job_run(
    self: glue_models.FakeJob,
    allocated_capacity: int | None = None,
    max_capacity: float | None = None,
    timeout: int | None = None,
    worker_type: str | None = None,
    security_configuration: str | None = None,
    number_of_workers: int | None = None,
    notification_property: dict[str, int] | None = None,
    previous_run_id: str | None = None,
    arguments: dict[str, str] | None = None,
) -> str:
    """Replacement for ``FakeJob.start_job_run``: same checks, but the run really runs."""
    active = [run for run in self.job_runs if run.status in ACTIVE_STATES]
    if len(active) >= self.execution_property.get("MaxConcurrentRuns", 1):
        raise ConcurrentRunsExceededException(f"Job with name {self.name} already running")
    run_arguments = {**self.default_arguments, **(arguments or {}), **(self.non_overridable_arguments or {})}
    run = LocalJobRun(
        self,
        run_arguments,
        allocated_capacity=allocated_capacity or self.allocated_capacity,
        max_capacity=max_capacity or self.max_capacity,
        timeout=timeout or self.timeout,
        worker_type=worker_type or self.worker_type,
        security_configuration=security_configuration or self.security_configuration,
        number_of_workers=number_of_workers or self.number_of_workers,
        notification_property=notification_property or self.notification_property,
        job_run_id=previous_run_id,
    )
    self.job_runs.append(run)
    run.start()
    return run.job_run_id


def _batch_stop_job_run_response(self: GlueResponse):
    """``BatchStopJobRun``, which moto lacks: stops each run's process."""
    from moto.core.responses import ActionResult

    job_name = self._get_param("JobName")
    stopped, errors = [], []
    job = self.glue_backend.get_job(job_name)
    for run_id in self._get_param("JobRunIds") or []:
        run = next((r for r in job.job_runs if r.job_run_id == run_id), None)
        if run is None:
            errors.append(
                {
                    "JobName": job_name,
                    "JobRunId": run_id,
                    "ErrorDetail": {"ErrorCode": "EntityNotFoundException", "ErrorMessage": "no such run"},
                }
            )
            continue
        if isinstance(run, LocalJobRun):
            run.stop()
        stopped.append({"JobName": job_name, "JobRunId": run_id})
    return ActionResult({"SuccessfulSubmissions": stopped, "Errors": errors})


# JobUpdate field -> FakeJob attribute, for the fields a job definition carries.
_JOB_UPDATE_FIELDS = {
    "Description": "description",
    "LogUri": "log_uri",
    "Role": "role",
    "ExecutionProperty": "execution_property",
    "Command": "command",
    "DefaultArguments": "default_arguments",
    "NonOverridableArguments": "non_overridable_arguments",
    "Connections": "connections",
    "MaxRetries": "max_retries",
    "AllocatedCapacity": "allocated_capacity",
    "Timeout": "timeout",
    "MaxCapacity": "max_capacity",
    "WorkerType": "worker_type",
    "NumberOfWorkers": "number_of_workers",
    "SecurityConfiguration": "security_configuration",
    "NotificationProperty": "notification_property",
    "GlueVersion": "glue_version",
    "ExecutionClass": "execution_class",
}


def _update_job_response(self: GlueResponse):
    """``UpdateJob``, which moto lacks: as on AWS, the update replaces the job's definition."""
    from moto.core.responses import ActionResult

    job_name = self._get_param("JobName")
    job = self.glue_backend.get_job(job_name)
    update = self._get_param("JobUpdate") or {}
    for field, attribute in _JOB_UPDATE_FIELDS.items():
        if field in update:
            setattr(job, attribute, update[field])
    job.last_modified_on = datetime.now(UTC)
    return ActionResult({"JobName": job_name})


# -- job bookmarks: the files the local awsglue writes ------------------------------------------------


def _read_bookmark(job_name: str) -> dict[str, Any]:
    path = runtime.bookmark_file(state_dir(), job_name)
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return runtime.empty_bookmark_entry(job_name)
    present = {key: value for key, value in entry.items() if value is not None}
    return {**runtime.empty_bookmark_entry(job_name), **present}


def _get_job_bookmark_response(self: GlueResponse):
    """``GetJobBookmark``, which moto lacks: the job's bookmark entry, empty if it has none."""
    from moto.core.responses import ActionResult

    job_name = self._get_param("JobName")
    self.glue_backend.get_job(job_name)  # EntityNotFoundException for an unknown job, as on AWS
    return ActionResult({"JobBookmarkEntry": _read_bookmark(job_name)})


def _reset_job_bookmark_response(self: GlueResponse):
    """``ResetJobBookmark``, which moto lacks: forgets what the job's runs have processed."""
    from moto.core.responses import ActionResult

    job_name = self._get_param("JobName")
    self.glue_backend.get_job(job_name)
    runtime.bookmark_file(state_dir(), job_name).unlink(missing_ok=True)
    entry = runtime.empty_bookmark_entry(job_name)
    if run_id := self._get_param("RunId"):
        entry["RunId"] = run_id
    return ActionResult({"JobBookmarkEntry": entry})
