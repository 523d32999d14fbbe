"""AWS Glue's transforms (``from awsglue.transforms import *`` gives every one of them).

Each is a class used as ``Transform.apply(frame=..., ...)`` (or ``Transform()(...)``), with
AWS's arguments; they call the DynamicFrame method of the same job.
"""

from __future__ import annotations

import json

from awsglue.transforms.apply_mapping import ApplyMapping
from awsglue.transforms.coalesce import Coalesce
from awsglue.transforms.collection_transforms import FlatMap, MapToCollection, SelectFromCollection
from awsglue.transforms.drop_nulls import DropNullFields
from awsglue.transforms.dynamicframe_filter import Filter
from awsglue.transforms.dynamicframe_map import Map
from awsglue.transforms.errors_as_dynamicframe import ErrorsAsDynamicFrame
from awsglue.transforms.field_transforms import (
    DropFields,
    Join,
    RenameField,
    SelectFields,
    Spigot,
    SplitFields,
    SplitRows,
)
from awsglue.transforms.relationalize import Relationalize
from awsglue.transforms.repartition import Repartition
from awsglue.transforms.resolve_choice import ResolveChoice
from awsglue.transforms.transform import GlueTransform
from awsglue.transforms.unbox import Unbox
from awsglue.transforms.union import Union
from awsglue.transforms.unnest_frame import UnnestFrame

ALL_TRANSFORMS = {
    ApplyMapping,
    Coalesce,
    DropFields,
    DropNullFields,
    ErrorsAsDynamicFrame,
    Filter,
    FlatMap,
    Join,
    Map,
    MapToCollection,
    Relationalize,
    RenameField,
    Repartition,
    ResolveChoice,
    SelectFields,
    SelectFromCollection,
    Spigot,
    SplitFields,
    SplitRows,
    Unbox,
    Union,
    UnnestFrame,
}

__all__ = sorted(t.__name__ for t in ALL_TRANSFORMS) + ["GlueTransform"]


def get_transforms():
    return {transform() for transform in ALL_TRANSFORMS}


def get_transform(name):
    found = [t for t in get_transforms() if t.name().lower() == name.lower()]
    return found[0] if found else None


def describe_transform(name):
    transform = get_transform(name)
    description = transform.describe() if transform else {}
    return json.dumps(description, sort_keys=True, indent=4, separators=(",", ": "))
