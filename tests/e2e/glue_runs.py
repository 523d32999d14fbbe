"""Glue jobs and their runs on the local stack, with plain boto3, for the end-to-end tests.

A job is created from a script uploaded to the artifacts bucket; a run is started, waited for
until it is no longer active, and its lines are read back from the log groups AWS Glue writes a
run's stdout and stderr to (one stream per run, named by the run's id).
"""

from __future__ import annotations

import time

ARTIFACTS = "etl-glue-artifacts"
ROLE = "arn:aws:iam::123456789012:role/etl-glue-job-role"
ACTIVE = ("STARTING", "RUNNING", "STOPPING", "WAITING")
OUTPUT_GROUP = "/aws-glue/jobs/output"
ERROR_GROUP = "/aws-glue/jobs/error"


def create_job(aws, name: str, key: str, script: bytes, command: str = "glueetl", **job) -> None:
    """Uploads the script to the artifacts bucket at ``key`` and creates a Glue 5.0 job running it;
    ``job`` holds further CreateJob parameters (``DefaultArguments``, ``ExecutionProperty``...)."""
    aws("s3").put_object(Bucket=ARTIFACTS, Key=key, Body=script)
    aws("glue").create_job(
        Name=name,
        Role=ROLE,
        GlueVersion="5.0",
        Command={"Name": command, "ScriptLocation": f"s3://{ARTIFACTS}/{key}", "PythonVersion": "3"},
        **job,
    )


def start_job_run(aws, job: str, **arguments) -> str:
    """Starts a run of the job with these run arguments; returns the run's id."""
    return aws("glue").start_job_run(JobName=job, Arguments=arguments)["JobRunId"]


def wait_for_job_run(aws, job: str, run_id: str, timeout: float = 300, poll: float = 0.2) -> dict:
    """Polls the run until it is no longer active and returns it; fails, naming the run, when it is
    still active after ``timeout`` seconds."""
    glue = aws("glue")
    deadline = time.monotonic() + timeout
    while (run := glue.get_job_run(JobName=job, RunId=run_id)["JobRun"])["JobRunState"] in ACTIVE:
        assert time.monotonic() < deadline, f"job run {run_id} still {run['JobRunState']} after {timeout} s"
        time.sleep(poll)
    return run


def job_log_lines(aws, run_id: str, group: str = OUTPUT_GROUP) -> list[str]:
    """The run's lines in one log group (its stdout by default), oldest first; [] while the run's
    stream does not exist."""
    logs = aws("logs")
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=run_id, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [event["message"] for event in events]


def output_and_error_lines(aws, run_id: str) -> list[str]:
    """The run's stdout lines, then its stderr lines."""
    return job_log_lines(aws, run_id, OUTPUT_GROUP) + job_log_lines(aws, run_id, ERROR_GROUP)
