"""The notification contract: what a SUCCESS or FAILURE message says, and how it is shaped.

Layer 1 (pure). Every message is published with ``MessageStructure="json"``: the ``default``
entry a JSON object (status, pipeline, dag_id, dag_run_id, batch_id, counts; a failure adds
task_id, try_number, error, log_url), the ``email`` entry the same facts as readable text, and
the subject ``<STATUS> <pipeline> <batch_id>`` (at most 100 characters).
"""

from __future__ import annotations

import json
from typing import Any

SUBJECT_LIMIT = 100
SUCCESS, FAILURE = "SUCCESS", "FAILURE"


def build_message(status: str, pipeline: str, facts: dict[str, Any]) -> tuple[str, str]:
    """(subject, message) for ``sns.publish(..., MessageStructure="json")``."""
    body = {"status": status, "pipeline": pipeline, **facts}
    subject = f"{status} {pipeline} {facts.get('batch_id') or '-'}"[:SUBJECT_LIMIT]
    return subject, json.dumps({"default": json.dumps(body, default=str), "email": _readable(body)})


def _readable(body: dict[str, Any]) -> str:
    lines = [f"{body['status']}: pipeline {body['pipeline']}, batch {body.get('batch_id') or '-'}", ""]
    for name, value in body.items():
        if name in ("status", "pipeline", "batch_id", "counts", "counts_table", "error"):
            continue
        lines.append(f"{name}: {value}")
    if body.get("counts"):
        lines += ["", "counts by layer:"]
        lines += [f"  {layer}: {counts}" for layer, counts in body["counts"].items()]
    if body.get("counts_table"):
        lines += ["", body["counts_table"]]
    if body.get("error"):
        lines += ["", "error:", str(body["error"])]
    return "\n".join(lines)
