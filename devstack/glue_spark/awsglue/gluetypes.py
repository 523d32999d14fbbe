"""AWS Glue's schema classes (``awsglue.gluetypes``) and the record helpers DynamicFrame uses.

The classes mirror the names and behaviour of AWS's module: ``DataType`` and its atomic
subclasses (``typeName()`` is the lower-cased class name without ``Type``, ``IntegerType`` is
``int``), ``ArrayType``, ``MapType``, ``SetType``, ``ChoiceType``, ``StructType`` made of
``Field`` objects, plus ``DynamicRecord`` (a dict whose keys can also be read and written as
attributes). ``DynamicFrame.schema()`` returns a ``StructType`` of these.

The functions after the classes run inside Spark's Python workers (``filter`` and ``map``
turn each row into a ``DynamicRecord`` and infer the schema of what ``map`` returns). This
module is registered with cloudpickle to be shipped by value, so those workers do not need
``awsglue`` on their own import path.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import json
import re
import sys
import traceback

from pyspark import cloudpickle as _cloudpickle
from pyspark.sql import types as T

# ---------------------------------------------------------------------------------------------
# Glue's schema classes
# ---------------------------------------------------------------------------------------------


class DataType:
    """The base class of Glue's types."""

    def __init__(self, properties=None):
        self.properties = dict(properties or {})

    def __eq__(self, other):
        return isinstance(other, self.__class__) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(str(self.__class__))

    @classmethod
    def typeName(cls):
        return cls.__name__[:-4].lower()

    def jsonValue(self):
        return {"dataType": self.typeName(), "properties": self.properties}

    def simpleString(self):
        return self.typeName()


class AtomicType(DataType):
    """The base class of Glue's atomic types."""

    def __repr__(self):
        return f"{self.__class__.__name__}({self.properties})"

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls(**{k: v for k, v in json_value.items() if k != "dataType"})


class BinaryType(AtomicType):
    pass


class BooleanType(AtomicType):
    pass


class ByteType(AtomicType):
    pass


class DateType(AtomicType):
    pass


class DecimalType(AtomicType):
    def __init__(self, precision=10, scale=2, properties=None):
        super().__init__(properties)
        self.precision = precision
        self.scale = scale

    def __repr__(self):
        return f"DecimalType({self.precision}, {self.scale}, {self.properties})"

    def jsonValue(self):
        return {**super().jsonValue(), "precision": self.precision, "scale": self.scale}

    def simpleString(self):
        return f"decimal({self.precision},{self.scale})"


class DoubleType(AtomicType):
    pass


class EnumType(AtomicType):
    def __init__(self, options, properties=None):
        super().__init__(properties)
        self.options = list(options)

    def jsonValue(self):
        return {**super().jsonValue(), "options": list(self.options)}


class FloatType(AtomicType):
    pass


class IntegerType(AtomicType):
    @classmethod
    def typeName(cls):
        return "int"


class LongType(AtomicType):
    pass


class NullType(AtomicType):
    pass


class ShortType(AtomicType):
    pass


class StringType(AtomicType):
    pass


class TimestampType(AtomicType):
    pass


class UnknownType(AtomicType):
    pass


class ArrayType(DataType):
    def __init__(self, elementType=None, properties=None):
        super().__init__(properties)
        self.elementType = elementType if elementType is not None else UnknownType()

    def __repr__(self):
        return f"ArrayType({self.elementType}, {self.properties})"

    def jsonValue(self):
        return {**super().jsonValue(), "elementType": self.elementType.jsonValue()}

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls(_deserialize_json_value(json_value["elementType"]), json_value.get("properties", {}))


class SetType(ArrayType):
    def __repr__(self):
        return f"SetType({self.elementType}, {self.properties})"


class ChoiceType(DataType):
    """A field whose values have more than one type; ``choices`` maps type names to types."""

    def __init__(self, choices=(), properties=None):
        super().__init__(properties)
        self.choices = {}
        for choice in choices:
            self.add(choice)

    def __repr__(self):
        ordered = sorted(self.choices.values(), key=lambda c: c.typeName())
        return f"ChoiceType([{','.join(str(c) for c in ordered)}], {self.properties})"

    def add(self, new_choice):
        if new_choice.typeName() in self.choices:
            raise ValueError("Attempting to insert duplicate choice", new_choice)
        self.choices[new_choice.typeName()] = new_choice

    def merge(self, new_choices):
        if not isinstance(new_choices, list):
            new_choices = [new_choices]
        for choice in new_choices:
            existing = self.choices.get(choice.typeName(), UnknownType())
            self.choices[choice.typeName()] = mergeDataTypes(existing, choice)

    def jsonValue(self):
        return {**super().jsonValue(), "choices": [v.jsonValue() for v in self.choices.values()]}

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls([_deserialize_json_value(c) for c in json_value["choices"]], json_value.get("properties", {}))


class MapType(DataType):
    def __init__(self, valueType=None, properties=None):
        super().__init__(properties)
        self.valueType = valueType if valueType is not None else UnknownType()

    def __repr__(self):
        return f"MapType({self.valueType}, {self.properties})"

    def jsonValue(self):
        return {**super().jsonValue(), "valueType": self.valueType.jsonValue()}

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls(_deserialize_json_value(json_value["valueType"]), json_value.get("properties", {}))


class Field:
    def __init__(self, name, dataType, properties=None):
        if not isinstance(dataType, DataType):
            raise TypeError(f"dataType should be DataType. Got {dataType.__class__}")
        self.name = str(name)
        self.dataType = dataType
        self.properties = dict(properties or {})

    def __eq__(self, other):
        return isinstance(other, Field) and self.name == other.name and self.dataType == other.dataType

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"Field({self.name}, {self.dataType}, {self.properties})"

    def jsonValue(self):
        return {"name": self.name, "container": self.dataType.jsonValue(), "properties": self.properties}

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls(
            json_value["name"], _deserialize_json_value(json_value["container"]), json_value.get("properties", {})
        )


class StructType(DataType):
    def __init__(self, fields=(), properties=None):
        super().__init__(properties)
        fields = list(fields)
        if not all(isinstance(f, Field) for f in fields):
            raise TypeError("fields should be a list of Field")
        self.fields = fields
        self.field_map = {f.name: f for f in fields}

    def __iter__(self):
        return iter(self.fields)

    def __len__(self):
        return len(self.fields)

    def __repr__(self):
        return f"StructType([{','.join(str(f) for f in self.fields)}], {self.properties})"

    def add(self, field):
        if not isinstance(field, Field):
            raise TypeError("field must be of type Field")
        self.fields.append(field)
        self.field_map[field.name] = field

    def hasField(self, field):
        return (field.name if isinstance(field, Field) else field) in self.field_map

    def getField(self, field):
        return self.field_map[field.name if isinstance(field, Field) else field]

    def names(self):
        return [f.name for f in self.fields]

    def jsonValue(self):
        return {**super().jsonValue(), "fields": [f.jsonValue() for f in self.fields]}

    @classmethod
    def fromJsonValue(cls, json_value):
        return cls([Field.fromJsonValue(f) for f in json_value["fields"]], json_value.get("properties", {}))

    def treeString(self):
        """Glue's printSchema text: ``root`` then ``|-- name: type`` lines, nested by ``|    ``."""
        lines = ["root"]
        for field in self.fields:
            _tree_lines(field.name, field.dataType, "", lines)
        return "\n".join(lines) + "\n"


class EntityType(DataType):
    def __init__(self, entity, base_type, properties):
        raise NotImplementedError("EntityType is not implemented (as in AWS Glue)")


def _tree_lines(name, dtype, indent, lines):
    lines.append(f"{indent}|-- {name}: {dtype.simpleString()}")
    child = indent + "|    "
    if isinstance(dtype, StructType):
        for field in dtype.fields:
            _tree_lines(field.name, field.dataType, child, lines)
    elif isinstance(dtype, ArrayType):
        _tree_lines("element", dtype.elementType, child, lines)
    elif isinstance(dtype, MapType):
        _tree_lines("value", dtype.valueType, child, lines)
    elif isinstance(dtype, ChoiceType):
        for choice in dtype.choices.values():
            if isinstance(choice, (StructType, ArrayType, MapType)):
                _tree_lines(choice.typeName(), choice, child, lines)
            else:
                lines.append(f"{child}|-- {choice.simpleString()}")


_atomic_types = [
    BinaryType,
    BooleanType,
    ByteType,
    DateType,
    DecimalType,
    DoubleType,
    EnumType,
    FloatType,
    IntegerType,
    LongType,
    NullType,
    ShortType,
    StringType,
    TimestampType,
    UnknownType,
]
_complex_types = [ArrayType, ChoiceType, MapType, StructType, SetType]
_all_type_map = {t.typeName(): t for t in _atomic_types + _complex_types}


def _deserialize_json_string(json_str):
    return _deserialize_json_value(json.loads(json_str))


def _deserialize_json_value(json_val):
    if not isinstance(json_val, dict):
        raise TypeError("Json value must be dictionary")
    return _all_type_map[json_val["dataType"]].fromJsonValue(json_val)


def _serialize_schema(schema):
    return json.dumps(schema.jsonValue())


def mergeDataTypes(s1, s2):
    """Merge two Glue types: unknown/null give way, differing types become a ChoiceType."""
    if isinstance(s1, (UnknownType, NullType)):
        return s2
    if isinstance(s2, (UnknownType, NullType)):
        return s1
    if isinstance(s1, ChoiceType) or isinstance(s2, ChoiceType) or type(s1) is not type(s2):
        left = s1.choices if isinstance(s1, ChoiceType) else {s1.typeName(): s1}
        right = dict(s2.choices) if isinstance(s2, ChoiceType) else {s2.typeName(): s2}
        for code, dtype in left.items():
            right[code] = mergeDataTypes(dtype, right[code]) if code in right else dtype
        return ChoiceType(list(right.values()), s1.properties)
    if isinstance(s1, StructType):
        fields = [
            Field(f.name, mergeDataTypes(f.dataType, s2.getField(f).dataType) if s2.hasField(f) else f.dataType)
            for f in s1
        ]
        fields.extend(Field(f.name, f.dataType) for f in s2 if not s1.hasField(f))
        return StructType(fields, s1.properties)
    if isinstance(s1, ArrayType):
        return ArrayType(mergeDataTypes(s1.elementType, s2.elementType))
    if isinstance(s1, MapType):
        return MapType(mergeDataTypes(s1.valueType, s2.valueType))
    return s1


class MissingFieldError(KeyError, AttributeError):
    """A record has no such field: a KeyError (as AWS raises) that ``hasattr`` understands."""


class DynamicRecord(dict):
    """One record of a DynamicFrame: a dict whose keys are also attributes."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        try:
            return self[attr]
        except KeyError:
            raise MissingFieldError(attr) from None

    def __setattr__(self, attr, value):
        self[attr] = value

    def __delattr__(self, attr):
        del self[attr]


# ---------------------------------------------------------------------------------------------
# Spark type <-> Glue type names
# ---------------------------------------------------------------------------------------------

_SPARK_TO_GLUE_NAME = {
    T.StringType: "string",
    T.IntegerType: "int",
    T.LongType: "long",
    T.ShortType: "short",
    T.ByteType: "byte",
    T.DoubleType: "double",
    T.FloatType: "float",
    T.BooleanType: "boolean",
    T.DateType: "date",
    T.TimestampType: "timestamp",
    T.TimestampNTZType: "timestamp",
    T.BinaryType: "binary",
    T.NullType: "null",
    T.StructType: "struct",
    T.ArrayType: "array",
    T.MapType: "map",
}

_GLUE_NAME_TO_SPARK = {
    "string": T.StringType(),
    "varchar": T.StringType(),
    "char": T.StringType(),
    "int": T.IntegerType(),
    "integer": T.IntegerType(),
    "long": T.LongType(),
    "bigint": T.LongType(),
    "short": T.ShortType(),
    "smallint": T.ShortType(),
    "byte": T.ByteType(),
    "tinyint": T.ByteType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "real": T.FloatType(),
    "boolean": T.BooleanType(),
    "bool": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
    "binary": T.BinaryType(),
    "null": T.NullType(),
    "decimal": T.DecimalType(10, 2),
}

_DECIMAL_RE = re.compile(r"^\s*(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\s*$", re.IGNORECASE)


def glue_type_name(spark_type) -> str:
    """The Glue type name of a Spark type (``decimal(p,s)`` for decimals)."""
    if isinstance(spark_type, T.DecimalType):
        return f"decimal({spark_type.precision},{spark_type.scale})"
    for cls, name in _SPARK_TO_GLUE_NAME.items():
        if isinstance(spark_type, cls):
            return name
    return spark_type.simpleString()


def spark_type_for(glue_name: str):
    """The Spark type for a Glue type name (``string``, ``bigint``, ``decimal(10,2)``...).

    ``struct``, ``array``, ``map`` and unknown names give None (no cast).
    """
    name = (glue_name or "").strip().lower()
    if name in _GLUE_NAME_TO_SPARK:
        return _GLUE_NAME_TO_SPARK[name]
    match = _DECIMAL_RE.match(name)
    if match:
        return T.DecimalType(int(match.group(1)), int(match.group(2) or 0))
    return None


def is_type_name(name) -> bool:
    if not isinstance(name, str):
        return False
    lowered = name.strip().lower()
    return spark_type_for(lowered) is not None or lowered in {"struct", "array", "map", "object", "choice"}


def glue_type_from_spark(spark_type, choice_names=None) -> DataType:
    """The Glue schema type of a Spark type; ``choice_names`` makes a ChoiceType instead."""
    if choice_names:
        return ChoiceType([_glue_atomic_for_name(n) for n in choice_names])
    if isinstance(spark_type, T.StructType):
        return StructType([Field(f.name, glue_type_from_spark(f.dataType)) for f in spark_type.fields])
    if isinstance(spark_type, T.ArrayType):
        return ArrayType(glue_type_from_spark(spark_type.elementType))
    if isinstance(spark_type, T.MapType):
        return MapType(glue_type_from_spark(spark_type.valueType))
    if isinstance(spark_type, T.DecimalType):
        return DecimalType(spark_type.precision, spark_type.scale)
    return _glue_atomic_for_name(glue_type_name(spark_type))


def _glue_atomic_for_name(name: str) -> DataType:
    name = name.strip().lower()
    simple = {
        "string": StringType,
        "int": IntegerType,
        "integer": IntegerType,
        "long": LongType,
        "bigint": LongType,
        "short": ShortType,
        "byte": ByteType,
        "double": DoubleType,
        "float": FloatType,
        "boolean": BooleanType,
        "date": DateType,
        "timestamp": TimestampType,
        "binary": BinaryType,
        "null": NullType,
        "struct": StructType,
        "array": ArrayType,
        "map": MapType,
    }
    if name in simple:
        return simple[name]()
    match = _DECIMAL_RE.match(name)
    if match or name == "decimal":
        return DecimalType(int(match.group(1)), int(match.group(2) or 0)) if match else DecimalType()
    return UnknownType()


# ---------------------------------------------------------------------------------------------
# Choice values: a choice column holds the string form of each value; these read it back
# ---------------------------------------------------------------------------------------------

# The order in which a value's string form is tested against the types of a choice: the first
# type of the choice that the text parses as is the value's type (``string`` takes the rest).
CHOICE_TYPE_ORDER = [
    "null",
    "boolean",
    "byte",
    "tinyint",
    "short",
    "smallint",
    "int",
    "integer",
    "long",
    "bigint",
    "decimal",
    "float",
    "double",
    "date",
    "timestamp",
    "struct",
    "array",
    "map",
    "binary",
    "string",
]

INTEGER_RE = r"^[+-]?[0-9]+$"
DECIMAL_TEXT_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_INT_RANGES = {
    "byte": 8,
    "tinyint": 8,
    "short": 16,
    "smallint": 16,
    "int": 32,
    "integer": 32,
    "long": 64,
    "bigint": 64,
}


def choice_type_key(name: str) -> str:
    """The family name of a choice type for ordering (``decimal(10,2)`` sorts as ``decimal``)."""
    lowered = name.strip().lower()
    return "decimal" if lowered.startswith("decimal") else lowered


def ordered_choice_types(types) -> list:
    def rank(name):
        key = choice_type_key(name)
        return CHOICE_TYPE_ORDER.index(key) if key in CHOICE_TYPE_ORDER else len(CHOICE_TYPE_ORDER) - 1

    return sorted(types, key=rank)


def parse_choice_text(text, type_name):
    """``(True, value)`` if ``text`` is a value of ``type_name``, else ``(False, None)``."""
    key = choice_type_key(type_name)
    try:
        if key == "string":
            return True, text
        if key == "boolean":
            if text.lower() in ("true", "false"):
                return True, text.lower() == "true"
            return False, None
        if key in _INT_RANGES:
            if re.match(INTEGER_RE, text):
                value = int(text)
                bits = _INT_RANGES[key]
                if -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
                    return True, value
            return False, None
        if key == "decimal":
            if re.match(DECIMAL_TEXT_RE, text):
                return True, _decimal.Decimal(text)
            return False, None
        if key in ("float", "double"):
            return True, float(text)
        if key == "date":
            if re.match(DATE_RE, text):
                return True, _dt.date.fromisoformat(text)
            return False, None
        if key == "timestamp":
            return True, _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if key in ("struct", "map"):
            if text.lstrip().startswith("{"):
                return True, to_record(json.loads(text))
            return False, None
        if key == "array":
            if text.lstrip().startswith("["):
                return True, to_record(json.loads(text))
            return False, None
    except (ValueError, TypeError):
        return False, None
    return False, None


def typed_choice_value(text, types):
    """The typed value of a choice column's text: the first type (in CHOICE_TYPE_ORDER) it fits."""
    if not isinstance(text, str):
        return text
    for name in ordered_choice_types(types):
        ok, value = parse_choice_text(text, name)
        if ok:
            return value
    return text


# ---------------------------------------------------------------------------------------------
# Rows <-> records (run in Spark's Python workers)
# ---------------------------------------------------------------------------------------------


def to_record(value):
    """Plain Python value with every dict (and Row) turned into a DynamicRecord, recursively."""
    if isinstance(value, T.Row):
        value = value.asDict(recursive=True)
    if isinstance(value, dict):
        return DynamicRecord({k: to_record(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return [to_record(v) for v in value]
    return value


def record_from_row(row, choices):
    """The DynamicRecord of a Spark Row; choice columns give their typed values."""
    record = to_record(row)
    for name, types in (choices or {}).items():
        if name in record:
            record[name] = typed_choice_value(record[name], types)
    return record


def to_plain(value):
    """A DynamicRecord (or any mapping/sequence) as plain dicts and lists."""
    if isinstance(value, T.Row):
        value = value.asDict(recursive=True)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, _decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def record_json(value) -> str:
    return json.dumps(to_plain(value), default=_json_default, ensure_ascii=False)


def text_of(value):
    """The string form a choice (or string) column keeps for a Python value."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple, T.Row)):
        return record_json(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


ERROR_SCHEMA = T.StructType(
    [
        T.StructField(
            "error",
            T.StructType(
                [
                    T.StructField("msg", T.StringType()),
                    T.StructField("stackTrace", T.StringType()),
                    T.StructField("transformation", T.StringType()),
                    T.StructField("transformationContext", T.StringType()),
                    T.StructField("info", T.StringType()),
                    T.StructField("input", T.StringType()),
                ]
            ),
        )
    ]
)


def error_tuple(message, exc, transformation, transformation_ctx, info, record):
    """One row of ERROR_SCHEMA: the ``error`` struct of a failed record."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc is not None else ""
    try:
        payload = record_json(record)
    except Exception:
        payload = repr(record)
    return ((message, stack, transformation, transformation_ctx, info, payload),)


# ---------------------------------------------------------------------------------------------
# Schema inference for what Map returns (records may differ: types merge, conflicts -> choice)
# An inferred type is a Spark atomic type, ("struct", ((name, type), ...)), ("array", type) or
# ("choice", frozenset of Glue type names): plain values that pickle between processes.
# ---------------------------------------------------------------------------------------------


def infer_value_type(value):
    """The inferred type of a Python value."""
    if value is None:
        return T.NullType()
    if isinstance(value, bool):
        return T.BooleanType()
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return T.IntegerType()
        if -(2**63) <= value < 2**63:
            return T.LongType()
        return T.DecimalType(38, 0)
    if isinstance(value, float):
        return T.DoubleType()
    if isinstance(value, _decimal.Decimal):
        return T.DecimalType(38, 18)
    if isinstance(value, str):
        return T.StringType()
    if isinstance(value, _dt.datetime):
        return T.TimestampType()
    if isinstance(value, _dt.date):
        return T.DateType()
    if isinstance(value, (bytes, bytearray)):
        return T.BinaryType()
    if isinstance(value, T.Row):
        value = value.asDict()
    if isinstance(value, dict):
        return ("struct", tuple((str(k), infer_value_type(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        element = T.NullType()
        for item in value:
            element = merge_types(element, infer_value_type(item))
        return ("array", element)
    return T.StringType()


def _kind(dtype):
    return dtype[0] if isinstance(dtype, tuple) else None


def _choice_names(dtype):
    kind = _kind(dtype)
    if kind == "choice":
        return set(dtype[1])
    if kind in ("struct", "array"):
        return {kind}
    return {glue_type_name(dtype)}


def merge_types(a, b):
    """Merge two inferred types: null gives way, int widens to long, other conflicts -> choice."""
    if isinstance(a, T.NullType):
        return b
    if isinstance(b, T.NullType):
        return a
    ka, kb = _kind(a), _kind(b)
    if ka == "struct" and kb == "struct":
        b_fields = dict(b[1])
        fields = [(n, merge_types(t, b_fields[n]) if n in b_fields else t) for n, t in a[1]]
        a_names = {n for n, _ in a[1]}
        fields.extend((n, t) for n, t in b[1] if n not in a_names)
        return ("struct", tuple(fields))
    if ka == "array" and kb == "array":
        return ("array", merge_types(a[1], b[1]))
    if ka is None and kb is None:
        integral = (T.IntegerType, T.LongType)
        if isinstance(a, integral) and isinstance(b, integral):
            return T.LongType() if T.LongType() in (a, b) else T.IntegerType()
        if isinstance(a, T.DecimalType) and isinstance(b, T.DecimalType):
            return T.DecimalType(38, max(a.scale, b.scale))
        if type(a) is type(b):
            return a
    return ("choice", frozenset(_choice_names(a) | _choice_names(b)))


def reconcile_type(observed, original, top_level_choices, name=None):
    """The Spark type of an inferred type, keeping the input frame's type where the values fit.

    ``top_level_choices`` (a dict) receives the choice names of a conflicting top-level field
    (``name`` is given only at the top level); nested conflicts become plain strings.
    """
    kind = _kind(observed)
    if kind == "choice":
        if name is not None:
            top_level_choices[name] = tuple(ordered_choice_types(observed[1]))
        return T.StringType()
    if kind == "struct":
        originals = {f.name: f.dataType for f in original.fields} if isinstance(original, T.StructType) else {}
        return T.StructType(
            [T.StructField(n, reconcile_type(t, originals.get(n), top_level_choices)) for n, t in observed[1]]
        )
    if kind == "array":
        element = original.elementType if isinstance(original, T.ArrayType) else None
        return T.ArrayType(reconcile_type(observed[1], element, top_level_choices))
    if isinstance(observed, T.NullType):
        return original if original is not None else T.NullType()
    if original is not None:
        numeric = (T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.DecimalType, T.DoubleType, T.FloatType)
        if isinstance(observed, T.IntegerType) and isinstance(original, numeric):
            return original
        if isinstance(observed, T.LongType) and isinstance(original, (T.LongType, T.DecimalType)):
            return original
        if isinstance(observed, T.DoubleType) and isinstance(original, (T.FloatType, T.DoubleType)):
            return original
        if isinstance(observed, T.DecimalType) and isinstance(original, T.DecimalType):
            return original
        if isinstance(observed, T.TimestampType) and isinstance(original, T.TimestampNTZType):
            return original
    if isinstance(observed, T.IntegerType):
        return T.LongType()
    return observed


def infer_record_type(record):
    return infer_value_type(dict(record))


def conform_value(value, dtype):
    """A Python value shaped for ``dtype`` (records to tuples, conflicting values to text)."""
    if value is None:
        return None
    if isinstance(dtype, T.StringType):
        return text_of(value)
    if isinstance(dtype, T.StructType):
        if isinstance(value, T.Row):
            value = value.asDict()
        if not isinstance(value, dict):
            return None
        return tuple(conform_value(value.get(f.name), f.dataType) for f in dtype.fields)
    if isinstance(dtype, T.ArrayType):
        if not isinstance(value, (list, tuple)):
            return None
        return [conform_value(v, dtype.elementType) for v in value]
    if isinstance(dtype, T.MapType):
        return {k: conform_value(v, dtype.valueType) for k, v in value.items()} if isinstance(value, dict) else None
    if isinstance(dtype, T.DecimalType):
        return _decimal.Decimal(str(value)) if isinstance(value, (int, float, _decimal.Decimal)) else None
    if isinstance(dtype, (T.DoubleType, T.FloatType)):
        numeric = isinstance(value, (int, float, _decimal.Decimal)) and not isinstance(value, bool)
        return float(value) if numeric else None
    if isinstance(dtype, (T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(dtype, T.BooleanType):
        return value if isinstance(value, bool) else None
    if isinstance(dtype, T.NullType):
        return None
    return value


_cloudpickle.register_pickle_by_value(sys.modules[__name__])
