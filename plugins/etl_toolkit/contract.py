"""The contract the pipelines keep with the systems around them, and the pipeline declaration.

Bottom layer: no toolkit imports. What lives here:

- the completion marker: where it is, what a batch id may be, what its body says
  (``parse_marker``), and where a marker goes once its batch is done (the archive);
- ``Pipeline`` and ``Layer``: what a DAG file declares once - its layers in order and the
  entities each counts - and what counting, reconciliation and the summary are driven by;
- the exceptions the layers above raise, so that each can tell the others' apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

BATCH_MARKER_PREFIX = "batch-completion/"
ARCHIVE_PREFIX = "batch-archive/"
LOADED, FAILED, REJECTED, HELD = "loaded", "failed", "rejected", "held"
BATCH_ID_PATTERN = r"[A-Za-z0-9_.-]{1,128}"
_BATCH_ID = re.compile(rf"^{BATCH_ID_PATTERN}$")
_MARKER_KEY = re.compile(rf"^{re.escape(BATCH_MARKER_PREFIX)}(?P<batch_id>{BATCH_ID_PATTERN})\.json$")


# -- exceptions ---------------------------------------------------------------------------------


class InvalidMarker(AirflowFailException):
    """A marker that breaks the contract; the message names the marker and the reason.

    Fails at once: the same marker would break the contract on every retry.
    """

    def __init__(self, message: str, batch_id: str | None = None):
        super().__init__(message)
        self.batch_id = batch_id

    def __reduce__(self):
        return (type(self), (str(self), self.batch_id))


class CountMismatch(AirflowFailException):
    """A layer's counts disagree with landing or the marker: recounting gives the same answer."""


class ClaimRefused(AirflowFailException):
    """Another run holds the batch: this run leaves the batch and its marker alone."""


class BatchHeld(ClaimRefused):
    """An in-order pipeline's batch waits for an earlier batch that has not loaded."""

    def __init__(self, message: str, batch_id: str | None = None):
        super().__init__(message)
        self.batch_id = batch_id

    def __reduce__(self):
        return (type(self), (str(self), self.batch_id))


class HolderUnknown(Exception):
    """Whether the run that holds a batch is still alive cannot be told now (retried)."""


# -- the marker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    batch_id: str
    key: str
    started_at: str | None = None
    completed_at: str | None = None
    expected_counts: dict[str, int] = field(default_factory=dict)
    objects: list[str] | None = None

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)


def is_batch_id(text: str | None) -> bool:
    return bool(_BATCH_ID.match(text or ""))


def marker_key(batch_id: str) -> str:
    if not is_batch_id(batch_id):
        raise InvalidMarker(f"batch id {batch_id!r} does not match {BATCH_ID_PATTERN}")
    return f"{BATCH_MARKER_PREFIX}{batch_id}.json"


def archive_key(batch_id: str, outcome: str) -> str:
    return f"{ARCHIVE_PREFIX}{outcome}/{batch_id}.json"


def batch_id_from_key(key: str) -> str:
    match = _MARKER_KEY.match(key)
    if not match:
        raise InvalidMarker(
            f"marker key {key!r} is not {BATCH_MARKER_PREFIX}<batch_id>.json with a batch id "
            f"matching {BATCH_ID_PATTERN}"
        )
    return match["batch_id"]


def parse_marker(key: str, body: bytes | str) -> Marker:
    """Validate a marker against the contract; raise InvalidMarker naming the key and the reason."""
    batch_id = batch_id_from_key(key)
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        return Marker(batch_id=batch_id, key=key)

    def invalid(reason: str) -> InvalidMarker:
        return InvalidMarker(f"marker {key} (batch {batch_id}) {reason}", batch_id=batch_id)

    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise invalid(f"is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise invalid(f"must be a JSON object, got {type(data).__name__}")
    if "batch_id" in data and data["batch_id"] != batch_id:
        raise InvalidMarker(
            f"marker {key} says batch_id {data['batch_id']!r} but its file name says {batch_id!r}", batch_id
        )
    for stamp in ("started_at", "completed_at"):
        if data.get(stamp) is not None:
            _parse_timestamp(key, batch_id, stamp, data[stamp])
    counts = data.get("expected_counts") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise invalid("expected_counts must map names to non-negative integers")
    objects = data.get("objects")
    if objects is not None and (not isinstance(objects, list) or not all(isinstance(o, str) for o in objects)):
        raise invalid("objects must be a list of keys")
    return Marker(batch_id, key, data.get("started_at"), data.get("completed_at"), dict(counts), objects)


def _parse_timestamp(key: str, batch_id: str, name: str, value: Any) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidMarker(f"marker {key}: {name} {value!r} is not an ISO-8601 timestamp", batch_id) from None
    if stamp.tzinfo is None:
        raise InvalidMarker(f"marker {key}: {name} {value!r} has no time zone (UTC expected)", batch_id)
    return stamp.astimezone(UTC)


# -- the pipeline declaration ---------------------------------------------------------------------

LANDING = "landing"


@dataclass(frozen=True)
class Layer:
    """One layer of a pipeline and the entities counted in it.

    ``matches`` says which earlier count each entity must equal, for layers whose entities are
    named otherwise than landing's (entity -> (earlier layer, entity)); an entity with no rule
    must equal landing's entity of the same name, when landing has one.

    ``plus`` splits an earlier count over several layers: the entity's count plus these earlier
    counts must equal its reference (entity -> ((layer, entity), ...)). E.g. valid rows plus
    rejected plus duplicates dropped equal the rows landed.
    """

    name: str
    entities: tuple[str, ...]
    matches: dict[str, tuple[str, str]] = field(default_factory=dict)
    plus: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))


@dataclass(frozen=True)
class Pipeline:
    """What a marker-driven DAG declares once: its name, its landing bucket, its layers in order.

    ``in_order``: batches load in the order of their ids, and one that has not loaded holds the
    ones after it (change data capture, where a batch builds on the one before). Their ids must
    sort in the order they were produced.
    """

    name: str
    landing_bucket: str
    layers: tuple[Layer, ...]
    max_attempts: int | None = None
    in_order: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.name} declares a layer twice: {names}")
        if names and names[0] != LANDING:
            raise ValueError(f"pipeline {self.name}: the first layer must be {LANDING!r}, got {names[0]!r}")
        for layer in self.layers:
            referred = [(entity, earlier) for entity, (earlier, _) in layer.matches.items()]
            referred += [(entity, earlier) for entity, parts in layer.plus.items() for earlier, _ in parts]
            for entity, earlier in referred:
                if earlier not in names[: names.index(layer.name)]:
                    raise ValueError(
                        f"pipeline {self.name}: {layer.name}.{entity} is matched with {earlier!r}, "
                        "which is not a layer declared before it"
                    )

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"pipeline {self.name} declares no layer {name!r}; it has {[x.name for x in self.layers]}")

    def layers_before(self, name: str) -> tuple[Layer, ...]:
        names = [layer.name for layer in self.layers]
        return self.layers[: names.index(name)]
