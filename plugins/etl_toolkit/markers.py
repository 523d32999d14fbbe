"""The landing bucket's completion markers and their archive.

Layer 2 (I/O). Upstream writes ``batch-completion/<batch_id>.json`` after a batch's last data
object. Once the batch is done its marker moves to ``batch-archive/<outcome>/`` (loaded, failed
or rejected), with the reason beside it as ``<batch_id>.reason.json``, so that a waiting run
never sees it again and writing it again runs the batch again.

A marker's *version* is its ETag and last-modified time: a marker written again while its batch
runs has a new version, which is how the archive step knows to leave it pending.
"""

from __future__ import annotations

import json
from typing import Any

from etl_toolkit.contract import (
    ARCHIVE_PREFIX,
    BATCH_MARKER_PREFIX,
    FAILED,
    HELD,
    LOADED,
    archive_key,
    marker_key,
)
from etl_toolkit.settings import AWS_CONN_ID


def version_of(head_or_listing: dict[str, Any]) -> str:
    """A marker version from a HeadObject answer or a ListObjectsV2 entry."""
    modified = head_or_listing["LastModified"]
    return f"{head_or_listing['ETag'].strip(chr(34))}@{modified.isoformat()}"


class MarkerStore:
    """The markers of one landing bucket, through the Amazon provider's S3Hook."""

    def __init__(self, bucket: str, aws_conn_id: str = AWS_CONN_ID):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        self.bucket = bucket
        self.s3 = S3Hook(aws_conn_id=aws_conn_id)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.s3.get_conn()
        return self._client

    def pending(self) -> list[dict[str, Any]]:
        """Keys under batch-completion/, oldest first (ties by key, so the order is stable)."""
        objects: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=BATCH_MARKER_PREFIX
        ):
            objects += page.get("Contents", [])
        return sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))

    def read(self, key: str) -> tuple[bytes, str]:
        """The marker's body and its version."""
        answer = self.client.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"].read(), version_of(answer)

    def version(self, key: str) -> str | None:
        """The version of the object at ``key``, or None when there is none."""
        from botocore.exceptions import ClientError

        try:
            return version_of(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def find(self, batch_id: str) -> str | None:
        """Where a batch's marker is now: pending, held, or set aside after a failure or a load."""
        candidates = (marker_key(batch_id), archive_key(batch_id, HELD), archive_key(batch_id, FAILED),
                      archive_key(batch_id, LOADED))  # fmt: skip
        for key in candidates:
            if self.version(key) is not None:
                return key
        return None

    def set_aside(
        self, key: str, outcome: str, reason: dict[str, Any] | None = None, if_version: str | None = None
    ) -> str:
        """Move a marker to batch-archive/<outcome>/, with the reason in a sibling .reason.json.

        The reason is written first: a marker is never in the archive without its reason.
        """
        target = f"{ARCHIVE_PREFIX}{outcome}/{key.rsplit('/', 1)[-1]}"
        if reason is not None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=f"{target.removesuffix('.json')}.reason.json",
                Body=json.dumps(reason, indent=2, default=str).encode(),
                ContentType="application/json",
            )
        if key != target:
            copy = {"Bucket": self.bucket, "Key": target, "CopySource": {"Bucket": self.bucket, "Key": key}}
            if if_version:
                # Copies only the version that was checked: on S3 a marker written again in between
                # fails the copy (PreconditionFailed) instead of being archived unseen. The local
                # emulator does not enforce it; the head_object check before covers all but that gap.
                copy["CopySourceIfMatch"] = f'"{if_version.split("@", 1)[0]}"'
            self.client.copy_object(**copy)
            self.client.delete_object(Bucket=self.bucket, Key=key)
        # One archived copy per batch: an older one elsewhere (failed, then loaded) would be found first.
        name = target.rsplit("/", 1)[-1]
        for other in (LOADED, FAILED, HELD) if outcome in (LOADED, FAILED, HELD) else ():
            stale = f"{ARCHIVE_PREFIX}{other}/{name}"
            if stale not in (target, key):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [
                    {"Key": stale}, {"Key": f"{stale.removesuffix('.json')}.reason.json"}], "Quiet": True})  # fmt: skip
        return target

    def held(self) -> list[str]:
        """Batch ids of the held markers, in batch-id order."""
        ids = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{ARCHIVE_PREFIX}{HELD}/"
        ):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if name.endswith(".json") and not name.endswith(".reason.json"):
                    ids.append(name.removesuffix(".json"))
        return sorted(ids)

    def release_held(self, before: str | None = None) -> list[str]:
        """Put the held markers (those before batch ``before``, if given) back under
        batch-completion/, in batch-id order; returns their keys."""
        released = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{ARCHIVE_PREFIX}{HELD}/"
        ):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if name.endswith(".reason.json") or not name.endswith(".json"):
                    continue
                if before is None or name.removesuffix(".json") < before:
                    released.append(obj["Key"])
        released.sort()
        for key in released:
            target = f"{BATCH_MARKER_PREFIX}{key.rsplit('/', 1)[-1]}"
            if self.version(target) is None:  # upstream may have written it again meanwhile: that one wins
                self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return released

    def archive_if_unchanged(
        self, batch_id: str, claimed_version: str | None, outcome: str = LOADED, reason: dict | None = None
    ) -> dict:
        """Archive a batch's marker unless it was written again since it was claimed.

        Returns what happened: ``{"archived": key}``, ``{"kept": key, "reason": ...}`` when the
        pending marker is a newer version (it runs again), or ``{"archived": key}`` for a marker
        already set aside elsewhere (after a failure, then Clear in the UI), which moves too.
        With ``reason``, the reason is written beside the archived marker.
        """
        pending = marker_key(batch_id)
        current = self.version(pending)
        if current is not None and claimed_version is not None and current != claimed_version:
            return {"kept": pending, "reason": f"written again while the batch ran ({current} != {claimed_version})"}
        key = pending if current is not None else self.find(batch_id)
        if key is None:
            return {"archived": None, "reason": f"no marker of batch {batch_id} left to archive"}
        from botocore.exceptions import ClientError

        try:
            return {"archived": self.set_aside(key, outcome, reason, if_version=claimed_version if current else None)}
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            return {"kept": pending, "reason": "written again while the batch ran (it changed as it was archived)"}
