"""AWS Glue's ``DynamicFrame`` for local runs, built on a plain PySpark DataFrame.

A ``DynamicFrame`` here wraps a Spark DataFrame (``toDF()`` gives it back) plus the Glue
metadata Spark has no place for: the *choice* columns (a field whose records disagree on its
type; the column holds the string form of every value and ``choices`` names the types seen,
e.g. ``{"price": ("int", "string")}``) and the error records of transforms such as ``map``.
Every transform returns a new frame; nothing changes in place.

Types: how Spark types show as Glue type names (``schema()``, ``printSchema()``, and the type
strings ``apply_mapping`` and ``resolveChoice`` accept):

=====================================  ================================================
Spark type                             Glue type name
=====================================  ================================================
StringType                             ``string``
IntegerType                            ``int`` (``integer`` accepted)
LongType                               ``long`` (``bigint`` accepted)
ShortType / ByteType                   ``short`` (``smallint``) / ``byte`` (``tinyint``)
DoubleType / FloatType                 ``double`` / ``float``
BooleanType                            ``boolean``
DateType                               ``date``
TimestampType / TimestampNTZType       ``timestamp``
DecimalType(p, s)                      ``decimal(p,s)`` (a bare ``decimal`` is (10,2))
BinaryType                             ``binary``
NullType                               ``null``
StructType                             ``struct`` (fields nested below it)
ArrayType                              ``array`` (``element`` below it)
MapType                                ``map`` (``value`` below it)
string column named in ``choices``     ``choice`` (its types listed below it)
=====================================  ================================================

What behaves differently from AWS Glue: a choice value's type is read back from its text
(``"12"`` in a choice of int and string counts as an int); ``toDF()`` turns an unresolved
choice into a struct with a field per type (as AWS's does); ``relationalize`` pivots arrays in
memory (``staging_path`` is not written) and its join keys are the row numbers 1, 2, 3... of
the table holding the array; ``unbox`` reads ``json`` only and types numbers as Spark's JSON
reader does (``long``, ``double``); a Python int that ``map`` adds to a record is a ``long``;
``resolveChoice`` has no ``match_catalog``; ``spigot``, array paths (``a[].b``) and any
attribute not implemented here raise ``LocalGlueUnsupported`` naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from awsglue import gluetypes as _gt
from awsglue._local.unsupported import unsupported
from awsglue.gluetypes import (
    DATE_RE,
    DECIMAL_TEXT_RE,
    ERROR_SCHEMA,
    INTEGER_RE,
    conform_value,
    error_tuple,
    infer_record_type,
    merge_types,
    record_from_row,
    record_json,
    to_plain,
)
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

__all__ = ["DynamicFrame", "DynamicFrameCollection", "DynamicFrameReader", "DynamicFrameWriter", "ResolveOption"]

# Type names of a choice, written the one way the rest of this module compares them.
_CANONICAL = {"integer": "int", "bigint": "long", "smallint": "short", "tinyint": "byte", "bool": "boolean"}


def _canonical(type_name: str) -> str:
    name = str(type_name).strip().lower()
    return _CANONICAL.get(name, name)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


# ---------------------------------------------------------------------------------------------
# Paths: "a.b.c" walks structs; back-ticks quote a name that has dots ("`a.b`.c")
# ---------------------------------------------------------------------------------------------


def _split_path(path: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "`":
            if quoted and path[i + 1 : i + 2] == "`":
                buf.append("`")
                i += 2
                continue
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _col(parts) -> Column:
    if isinstance(parts, str):
        parts = [parts]
    return F.col(".".join(_quote(p) for p in parts))


def _find_field(struct: T.StructType, name: str, case_sensitive: bool):
    for field in struct.fields:
        if field.name == name:
            return field
    if not case_sensitive:
        lowered = name.lower()
        for field in struct.fields:
            if field.name.lower() == lowered:
                return field
    return None


def _walk(schema: T.StructType, parts: list[str], case_sensitive: bool):
    names = []
    dtype: T.DataType = schema
    for part in parts:
        if not isinstance(dtype, T.StructType):
            return None
        field = _find_field(dtype, part, case_sensitive)
        if field is None:
            return None
        names.append(field.name)
        dtype = field.dataType
    return names, dtype


def _resolve(schema: T.StructType, path: str, case_sensitive: bool = False):
    """``(actual names along the path, Spark type)`` of a path, or None if it is not there.

    An unquoted dotted path that matches no nested field may still name a flattened top-level
    column (``"a.b"`` after ``unnest``).
    """
    if "[]" in path:
        raise unsupported("DynamicFrame", f"array path {path!r}")
    parts = _split_path(path)
    found = _walk(schema, parts, case_sensitive)
    if found is None and len(parts) > 1 and "`" not in path:
        found = _walk(schema, [path], case_sensitive)
    return found


def _as_list(paths) -> list[str]:
    if paths is None:
        return []
    if isinstance(paths, str):
        return [paths]
    return list(paths)


def _null_safe_struct(expr: Column, fields: list[Column]) -> Column:
    """A rebuilt struct that stays null where the original struct was null."""
    return F.when(expr.isNull(), F.lit(None)).otherwise(F.struct(*fields))


def _path_tree(paths: list[list[str]]) -> dict:
    """Nested dict of path parts; ``True`` marks a whole node."""
    tree: dict = {}
    for names in paths:
        node = tree
        for part in names[:-1]:
            child = node.get(part)
            if child is True:
                break
            node = node.setdefault(part, {})
        else:
            node[names[-1]] = True
    return tree


def _prune(expr: Column, struct: T.StructType, tree: dict):
    """``expr`` (a struct) without the fields ``tree`` marks; None if nothing is left."""
    fields = []
    for field in struct.fields:
        sub = tree.get(field.name)
        if sub is True:
            continue
        child = expr.getField(field.name)
        if isinstance(sub, dict) and isinstance(field.dataType, T.StructType):
            child = _prune(child, field.dataType, sub)
            if child is None:
                continue
        fields.append(child.alias(field.name))
    if not fields:
        return None
    return _null_safe_struct(expr, fields)


def _keep(expr: Column, struct: T.StructType, tree: dict):
    """``expr`` (a struct) with only the fields ``tree`` marks."""
    fields = []
    for field in struct.fields:
        sub = tree.get(field.name)
        if sub is None:
            continue
        child = expr.getField(field.name)
        if isinstance(sub, dict) and isinstance(field.dataType, T.StructType):
            child = _keep(child, field.dataType, sub)
        fields.append(child.alias(field.name))
    return _null_safe_struct(expr, fields)


def _nest(parts: list[str], value: Column) -> Column:
    for part in reversed(parts):
        value = F.struct(value.alias(part))
    return value


def _put_in_struct(expr: Column, struct: T.StructType, parts: list[str], value: Column) -> Column:
    """``expr`` (a struct) with the field at ``parts`` set to ``value`` (created if missing)."""
    fields = []
    found = False
    for field in struct.fields:
        child = expr.getField(field.name)
        if field.name == parts[0]:
            found = True
            if len(parts) == 1:
                child = value
            elif isinstance(field.dataType, T.StructType):
                child = _put_in_struct(child, field.dataType, parts[1:], value)
            else:
                child = _nest(parts[1:], value)
        fields.append(child.alias(field.name))
    if not found:
        fields.append(_nest(parts[1:], value).alias(parts[0]))
    return _null_safe_struct(expr, fields)


def _rename_in_struct(expr: Column, struct: T.StructType, parts: list[str], new_name: str) -> Column:
    fields = []
    for field in struct.fields:
        child = expr.getField(field.name)
        name = field.name
        if field.name == parts[0]:
            if len(parts) == 1:
                name = new_name
            elif isinstance(field.dataType, T.StructType):
                child = _rename_in_struct(child, field.dataType, parts[1:], new_name)
        fields.append(child.alias(name))
    return _null_safe_struct(expr, fields)


def _replace_top(df: DataFrame, name: str, expr: Column | None, new_name: str | None = None) -> DataFrame:
    """``df`` with top-level column ``name`` replaced by ``expr`` (dropped if None), in place;
    appended if there was no such column."""
    cols = []
    seen = False
    for column in df.columns:
        if column == name:
            seen = True
            if expr is not None:
                cols.append(expr.alias(new_name or name))
        else:
            cols.append(_col(column))
    if not seen and expr is not None:
        cols.append(expr.alias(new_name or name))
    return df.select(*cols)


def _put(df: DataFrame, parts: list[str], value: Column, case_sensitive: bool = False) -> DataFrame:
    """``df`` with the (possibly nested) path ``parts`` set to ``value``."""
    top = _find_field(df.schema, parts[0], case_sensitive)
    if len(parts) == 1:
        return _replace_top(df, top.name if top else parts[0], value)
    if top is not None and isinstance(top.dataType, T.StructType):
        return _replace_top(df, top.name, _put_in_struct(_col(top.name), top.dataType, parts[1:], value))
    return _replace_top(df, top.name if top else parts[0], _nest(parts[1:], value))


def _drop_paths(df: DataFrame, resolved: list[list[str]]) -> DataFrame:
    tree = _path_tree(resolved)
    cols = []
    for field in df.schema.fields:
        sub = tree.get(field.name)
        if sub is True:
            continue
        if isinstance(sub, dict) and isinstance(field.dataType, T.StructType):
            pruned = _prune(_col(field.name), field.dataType, sub)
            if pruned is not None:
                cols.append(pruned.alias(field.name))
            continue
        cols.append(_col(field.name))
    return df.select(*cols)


def _flat_columns(struct: T.StructType, parts: list[str], prefix: str) -> list[Column]:
    cols = []
    for field in struct.fields:
        here = parts + [field.name]
        name = prefix + field.name
        if isinstance(field.dataType, T.StructType) and field.dataType.fields:
            cols.extend(_flat_columns(field.dataType, here, name + "."))
        else:
            cols.append(_col(here).alias(name))
    return cols


def _flatten(df: DataFrame) -> DataFrame:
    return df.select(*_flat_columns(df.schema, [], ""))


# ---------------------------------------------------------------------------------------------
# Casts and choice values
# ---------------------------------------------------------------------------------------------

_NUMERIC = (T.NumericType, T.BooleanType)
_ATOMIC = (T.NumericType, T.BooleanType, T.StringType, T.DateType, T.TimestampType, T.TimestampNTZType)


def _cast(expr: Column, source: T.DataType, target: T.DataType) -> Column:
    """``expr`` cast like Glue does: values that do not convert become null."""
    if source == target:
        return expr
    if isinstance(target, T.StringType):
        if isinstance(source, (T.StructType, T.ArrayType, T.MapType)):
            return F.to_json(expr)
        return expr.cast(target)
    if isinstance(source, (T.StringType, T.NullType)):
        return expr.cast(target)
    time_types = (T.TimestampType, T.TimestampNTZType)
    if isinstance(source, _NUMERIC) and isinstance(target, _NUMERIC):
        return expr.cast(target)
    if isinstance(source, T.NumericType) and isinstance(target, time_types):
        return expr.cast(target)
    if isinstance(source, T.NumericType) and isinstance(target, T.DateType):
        return F.to_date(expr.cast(T.TimestampType()))
    if isinstance(source, time_types) and isinstance(target, (T.NumericType, T.DateType, *time_types)):
        return expr.cast(target)
    if isinstance(source, T.DateType) and isinstance(target, time_types):
        return expr.cast(target)
    if isinstance(source, T.BinaryType) and isinstance(target, T.StringType):
        return expr.cast(target)
    return F.lit(None).cast(target)


def _matches(text: Column, type_name: str) -> Column:
    """Whether a choice column's text is a value of ``type_name`` (mirrors parse_choice_text)."""
    key = _gt.choice_type_key(type_name)
    if key == "string":
        return F.lit(True)
    if key == "boolean":
        return F.lower(text).isin("true", "false")
    spark_type = _gt.spark_type_for(key)
    if key in ("byte", "short", "int", "long"):
        return text.rlike(INTEGER_RE) & text.cast(spark_type).isNotNull()
    if key == "decimal":
        return text.rlike(DECIMAL_TEXT_RE)
    if key in ("float", "double"):
        return text.cast(T.DoubleType()).isNotNull()
    if key == "date":
        return text.rlike(DATE_RE) & text.cast(T.DateType()).isNotNull()
    if key == "timestamp":
        return text.cast(T.TimestampType()).isNotNull()
    if key in ("struct", "map"):
        return F.ltrim(text).startswith("{")
    if key == "array":
        return F.ltrim(text).startswith("[")
    return F.lit(False)


def _classify(text: Column, types) -> Column:
    """The Glue type name each value of a choice column belongs to."""
    ordered = _gt.ordered_choice_types(types)
    expr = None
    for name in ordered:
        cond = _matches(text, name)
        expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
    return expr.otherwise(F.lit(ordered[-1]))


def _json_type(df: DataFrame, text: Column) -> T.DataType:
    """The Spark type Spark's JSON reader infers for the JSON texts of a column (in the JVM)."""
    spark = df.sparkSession
    wrapped = df.select(F.concat(F.lit('{"v":'), text, F.lit("}")).alias("v")).where(F.col("v").isNotNull())
    strings = getattr(wrapped._jdf, "as")(spark._jvm.org.apache.spark.sql.Encoders.STRING())
    schema = T._parse_datatype_json_string(spark._jsparkSession.read().json(strings).schema().json())
    field = _find_field(schema, "v", True)
    return field.dataType if field is not None else T.StringType()


def _parse_json(df: DataFrame, text: Column, only=None) -> Column:
    sample = text if only is None else F.when(only, text)
    dtype = _json_type(df, sample)
    wrapped = F.concat(F.lit('{"v":'), sample, F.lit("}"))
    return F.from_json(wrapped, T.StructType([T.StructField("v", dtype)])).getField("v")


def _text_as(df: DataFrame, text: Column, type_name: str, only=None) -> Column:
    """Choice text converted to ``type_name`` (null where ``only`` is false or it does not convert)."""
    key = _gt.choice_type_key(type_name)
    if key in ("struct", "array", "map"):
        return _parse_json(df, text, _matches(text, type_name) if only is None else only)
    target = _gt.spark_type_for(type_name)
    if target is None:
        raise ValueError(f"Unknown type {type_name!r} in a resolveChoice action")
    value = text if isinstance(target, T.StringType) else text.cast(target)
    return value if only is None else F.when(only, value)


_FAMILIES = {
    "byte": "integral",
    "short": "integral",
    "int": "integral",
    "long": "integral",
    "float": "floating",
    "double": "floating",
}


def _family(type_name: str) -> str:
    key = _gt.choice_type_key(_canonical(type_name))
    return _FAMILIES.get(key, key)


def _project(df: DataFrame, text: Column, types, type_name: str) -> Column:
    """Only the values of a choice column that are of ``type_name`` (or of the member type of
    the same family: ``project:long`` on a choice of int and string keeps the ints)."""
    ordered = _gt.ordered_choice_types(types)
    label = next((t for t in ordered if _canonical(t) == _canonical(type_name)), None)
    if label is None:
        label = next((t for t in ordered if _family(t) == _family(type_name)), None)
    if label is None:
        return _text_as(df, text, type_name, F.lit(False))
    return _text_as(df, text, type_name, _classify(text, types) == F.lit(label))


# ---------------------------------------------------------------------------------------------
# DynamicFrame
# ---------------------------------------------------------------------------------------------


class ResolveOption:
    """How ``toDF(options)`` resolves one choice: "Project"/"Cast" (with a target type) or
    "KeepAsStruct"."""

    def __init__(self, path, action, target=None):
        self.path = path
        self.action = action
        self.target = target


def _session_of(glue_ctx) -> SparkSession:
    for attribute in ("spark_session", "sparkSession"):
        try:
            session = getattr(glue_ctx, attribute)
        except Exception:
            session = None
        if isinstance(session, SparkSession):
            return session
    return SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()


class DynamicFrame:
    """A Glue DynamicFrame: a Spark DataFrame plus Glue's choice columns and error records."""

    def __init__(self, df, glue_ctx, name="", choices=None):
        if not isinstance(df, DataFrame):
            # AWS's constructor takes a JVM frame; a JVM DataFrame is accepted for that reason.
            df = DataFrame(df, _session_of(glue_ctx))
        self._df = df
        self.glue_ctx = glue_ctx
        self.name = name or ""
        columns = set(df.columns)
        self._choices = {
            str(k): tuple(_canonical(t) for t in v) for k, v in (choices or {}).items() if k in columns and v
        }
        self._stage_errors: DataFrame | None = None
        self._prev_errors: list[DataFrame] = []
        self._thresholds = (0, 0)

    def __getattr__(self, name):
        if _is_dunder(name):
            raise AttributeError(name)
        raise unsupported("DynamicFrame", name)

    def __repr__(self):
        return f"DynamicFrame(name={self.name!r}, columns={self._df.columns!r})"

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def fromDF(cls, dataframe, glue_ctx, name):
        """A DynamicFrame of a Spark DataFrame."""
        return cls(dataframe, glue_ctx, name)

    def toDF(self, options=None):
        """The Spark DataFrame. Unresolved choice columns become structs (one field per type,
        as AWS does); ``options`` (ResolveOption) resolve them another way first."""
        if not self._choices and not options:
            return self._df
        specs = []
        for option in options or []:
            action = str(option.action).lower()
            if action == "keepasstruct":
                specs.append((option.path, "make_struct"))
                continue
            if option.target is None:
                raise ValueError(f"Missing target type for resolve action {option.action}.")
            target = option.target
            target_name = target if isinstance(target, str) else _gt.glue_type_name(target)
            if action not in ("project", "cast"):
                raise ValueError(f"Unknown resolve action {option.action}")
            specs.append((option.path, f"{action}:{target_name}"))
        named = {_split_path(path)[0] for path, _ in specs}
        specs.extend((name, "make_struct") for name in self._choices if name not in named)
        df, _ = self._apply_specs(specs)
        return df

    def _derive(self, df, name=None, choices=None, stage_errors=None, extra_prev=()) -> DynamicFrame:
        frame = DynamicFrame(df, self.glue_ctx, self.name if name is None else name, choices)
        frame._prev_errors = self._all_errors() + [e for other in extra_prev for e in other._all_errors()]
        frame._stage_errors = stage_errors
        return frame

    def _all_errors(self) -> list[DataFrame]:
        return self._prev_errors + ([self._stage_errors] if self._stage_errors is not None else [])

    def _choices_kept(self, df) -> dict:
        return {k: v for k, v in self._choices.items() if k in df.columns}

    # -- information ----------------------------------------------------------------------------

    def count(self):
        return self._df.count()

    def schema(self):
        """The Glue schema (awsglue.gluetypes.StructType); choice columns are ChoiceTypes."""
        return _gt.StructType(
            [
                _gt.Field(f.name, _gt.glue_type_from_spark(f.dataType, self._choices.get(f.name)))
                for f in self._df.schema.fields
            ]
        )

    def printSchema(self):
        print(self.schema().treeString().rstrip("\n"))

    def show(self, num_rows=20):
        """Prints the first records as JSON, one a line."""
        choices = self._choices
        for row in self._df.take(num_rows):
            print(record_json(record_from_row(row, choices)))

    def getNumPartitions(self):
        return self._df.rdd.getNumPartitions()

    def repartition(self, num_partitions, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return self._checked(self._derive(self._df.repartition(num_partitions), choices=self._choices), totalThreshold)

    def coalesce(
        self, num_partitions, shuffle=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        df = self._df.repartition(num_partitions) if shuffle else self._df.coalesce(num_partitions)
        return self._checked(self._derive(df, choices=self._choices), totalThreshold)

    # -- errors ---------------------------------------------------------------------------------

    def errorsCount(self):
        """Error records of this frame, including those of the frames it came from."""
        return sum(e.count() for e in self._all_errors())

    def stageErrorsCount(self):
        """Error records of the transformation that made this frame."""
        return self._stage_errors.count() if self._stage_errors is not None else 0

    def errorsAsDynamicFrame(self):
        """The error records, each an ``error`` struct: msg, stackTrace, transformation,
        transformationContext, info and input (the failing record as JSON)."""
        errors = self._all_errors()
        if errors:
            df = functools.reduce(DataFrame.unionByName, errors)
        else:
            df = self._df.sparkSession.createDataFrame([], ERROR_SCHEMA)
        return DynamicFrame(df, self.glue_ctx, self.name)

    def assertErrorThreshold(self):
        stage, total = self._thresholds
        self._check(stage, total)

    def _check(self, stageThreshold, totalThreshold):
        if stageThreshold and self.stageErrorsCount() > stageThreshold:
            raise RuntimeError(
                f"Error records ({self.stageErrorsCount()}) of this transformation exceed stageThreshold "
                f"{stageThreshold}"
            )
        if totalThreshold and self.errorsCount() > totalThreshold:
            raise RuntimeError(f"Error records ({self.errorsCount()}) exceed totalThreshold {totalThreshold}")

    def _checked(self, frame, totalThreshold=0, stageThreshold=0):
        frame._thresholds = (stageThreshold or 0, totalThreshold or 0)
        frame._check(stageThreshold, totalThreshold)
        return frame

    # -- field transforms -----------------------------------------------------------------------

    def apply_mapping(
        self, mappings, case_sensitive=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        """Keeps only the mapped fields, renamed and cast: each mapping is (source path,
        source type, target path, target type); (source, target, target type) and (source,
        target) are accepted too. Dotted targets build structs; a missing source gives nothing."""
        if isinstance(mappings, tuple):
            mappings = [mappings]
        schema = self._df.schema
        tree: dict = {}
        choices_out = {}
        for mapping in mappings:
            source, _source_type, target, target_type = _normalize_mapping(mapping)
            if "[]" in target:
                raise unsupported("DynamicFrame", f"apply_mapping array path {target!r}")
            found = _resolve(schema, source, case_sensitive)
            if found is None:
                continue
            names, dtype = found
            expr = _col(names)
            target_parts = _split_path(target)
            is_choice = len(names) == 1 and names[0] in self._choices
            spark_target = _gt.spark_type_for(target_type) if target_type else None
            if is_choice and spark_target is None:
                if len(target_parts) == 1:
                    choices_out[target_parts[0]] = self._choices[names[0]]
            elif is_choice:
                expr = _text_as(self._df, expr.cast("string"), target_type)
            elif spark_target is not None:
                expr = _cast(expr, dtype, spark_target)
            node = tree
            for part in target_parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[target_parts[-1]] = expr

        def build(node):
            return F.struct(*[(build(v) if isinstance(v, dict) else v).alias(k) for k, v in node.items()])

        cols = [(build(v) if isinstance(v, dict) else v).alias(k) for k, v in tree.items()]
        df = self._df.select(*cols)
        return self._checked(self._derive(df, choices=choices_out), totalThreshold)

    def drop_fields(self, paths, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Drops the fields at the paths (nested paths drop a field inside a struct)."""
        resolved = [found[0] for p in _as_list(paths) if (found := _resolve(self._df.schema, p)) is not None]
        df = _drop_paths(self._df, resolved) if resolved else self._df
        return self._checked(self._derive(df, choices=self._choices_kept(df)), totalThreshold)

    def select_fields(self, paths, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Keeps only the fields at the paths (a nested path keeps its struct with that field)."""
        resolved = [found[0] for p in _as_list(paths) if (found := _resolve(self._df.schema, p)) is not None]
        tree = _path_tree(resolved)
        cols = []
        for field in self._df.schema.fields:
            sub = tree.get(field.name)
            if sub is True:
                cols.append(_col(field.name))
            elif isinstance(sub, dict) and isinstance(field.dataType, T.StructType):
                cols.append(_keep(_col(field.name), field.dataType, sub).alias(field.name))
        df = self._df.select(*cols)
        return self._checked(self._derive(df, choices=self._choices_kept(df)), totalThreshold)

    def rename_field(self, oldName, newName, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Renames (or moves) the field at ``oldName`` to the full path ``newName``."""
        found = _resolve(self._df.schema, oldName)
        if found is None:
            return self._derive(self._df, choices=self._choices)
        old, _ = found
        new = _split_path(newName)
        choices = dict(self._choices)
        if len(old) == 1 and len(new) == 1:
            df = _replace_top(self._df, old[0], _col(old[0]), new[0])
            if old[0] in choices:
                choices[new[0]] = choices.pop(old[0])
        elif len(old) == len(new) and [p.lower() for p in old[:-1]] == [p.lower() for p in new[:-1]]:
            top = _find_field(self._df.schema, old[0], True)
            df = _replace_top(self._df, old[0], _rename_in_struct(_col(old[0]), top.dataType, old[1:], new[-1]))
        else:
            moved = _put(self._df, new, _col(old))
            df = (
                _drop_paths(moved, [old]) if _walk(moved.schema, new, True) != _walk(moved.schema, old, True) else moved
            )
            if len(old) == 1 and old[0] in choices and len(new) == 1:
                choices[new[0]] = choices.pop(old[0])
        choices = {k: v for k, v in choices.items() if k in df.columns}
        return self._checked(self._derive(df, choices=choices), totalThreshold)

    def split_fields(self, paths, name1, name2, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """A collection of two frames: ``name1`` with the fields at the paths, ``name2`` with the rest."""
        first = self.select_fields(paths)
        second = self.drop_fields(paths)
        first.name, second.name = name1, name2
        return DynamicFrameCollection({name1: first, name2: second}, self.glue_ctx)

    def split_rows(
        self, comparison_dict, name1, name2, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        """A collection of two frames: ``name1`` with the rows meeting every comparison
        (``{"age": {">": 10, "<": 20}}``), ``name2`` with the others."""
        ops = {
            "<": Column.__lt__,
            ">": Column.__gt__,
            "<=": Column.__le__,
            ">=": Column.__ge__,
            "=": Column.__eq__,
            "==": Column.__eq__,
            "!=": Column.__ne__,
            "<>": Column.__ne__,
        }
        cond = F.lit(True)
        for path, comparisons in comparison_dict.items():
            found = _resolve(self._df.schema, path)
            expr = _col(found[0]) if found is not None else F.lit(None)
            for op, value in comparisons.items():
                if op not in ops:
                    raise ValueError(f"Unknown comparison operator {op!r}")
                cond = cond & ops[op](expr, F.lit(value))
        matched = F.coalesce(cond, F.lit(False))
        first = self._derive(self._df.where(matched), name=name1, choices=self._choices)
        second = self._derive(self._df.where(~matched), name=name2, choices=self._choices)
        return DynamicFrameCollection({name1: first, name2: second}, self.glue_ctx)

    def join(self, paths1, paths2, frame2, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Equality (inner) join; both frames' fields are kept, and a field of ``frame2`` whose
        name is already taken gets a leading ``.``."""
        keys1, keys2 = _as_list(paths1), _as_list(paths2)
        if len(keys1) != len(keys2):
            raise ValueError("paths1 and paths2 must have the same number of keys")
        left, right = self._df, frame2._df
        taken = {c.lower() for c in left.columns}
        renamed = {c: ("." + c if c.lower() in taken else c) for c in right.columns}
        right = right.select(*[_col(c).alias(renamed[c]) for c in right.columns])
        cond = F.lit(True)
        for k1, k2 in zip(keys1, keys2, strict=True):
            found1 = _resolve(self._df.schema, k1)
            found2 = _resolve(frame2._df.schema, k2)
            if found1 is None or found2 is None:
                missing = k1 if found1 is None else k2
                raise ValueError(f"Join key {missing!r} is not a field of its frame")
            names2 = [renamed[found2[0][0]]] + found2[0][1:]
            cond = cond & (left[".".join(_quote(n) for n in found1[0])] == right[".".join(_quote(n) for n in names2)])
        df = left.join(right, on=cond, how="inner")
        choices = dict(self._choices)
        choices.update({renamed[k]: v for k, v in frame2._choices.items()})
        frame = self._derive(df, name=self.name + frame2.name, choices=choices, extra_prev=(frame2,))
        return self._checked(frame, totalThreshold)

    def union(self, other_frame, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """All records of both frames (fields matched by name; a missing field is null)."""
        df = self._df.unionByName(other_frame._df, allowMissingColumns=True)
        choices = {**other_frame._choices, **self._choices}
        return self._checked(self._derive(df, choices=choices, extra_prev=(other_frame,)), totalThreshold)

    def mergeDynamicFrame(
        self,
        stage_dynamic_frame,
        primary_keys,
        transformation_ctx="",
        options=None,
        info="",
        stageThreshold=0,
        totalThreshold=0,
    ):
        """The staging frame's records plus this frame's records whose primary keys it lacks."""
        keys = _as_list(primary_keys)
        stage = stage_dynamic_frame._df
        cond = functools.reduce(
            lambda acc, k: acc & self._df[_quote(k)].eqNullSafe(stage[_quote(k)]), keys, F.lit(True)
        )
        kept = self._df.join(stage, on=cond, how="left_anti")
        df = kept.unionByName(stage, allowMissingColumns=True)
        choices = {**self._choices, **stage_dynamic_frame._choices}
        frame = self._derive(df, choices=choices, extra_prev=(stage_dynamic_frame,))
        return self._checked(frame, totalThreshold)

    def unnest(self, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Struct fields become top-level fields named by their path (``a.b``); arrays stay."""
        df = _flatten(self._df)
        return self._checked(self._derive(df, choices=self._choices_kept(df)), totalThreshold)

    def drop_null_fields(self, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Drops the fields (nested ones too) that are null in every record."""
        leaves: list[list[str]] = []

        def collect(struct, parts):
            for field in struct.fields:
                here = parts + [field.name]
                if isinstance(field.dataType, T.StructType) and field.dataType.fields:
                    collect(field.dataType, here)
                else:
                    leaves.append(here)

        collect(self._df.schema, [])
        if not leaves:
            return self._derive(self._df, choices=self._choices)
        aggs = [F.count(F.lit(1)).alias("rows")] + [F.count(_col(p)).alias(f"c{i}") for i, p in enumerate(leaves)]
        counts = self._df.agg(*aggs).first()
        null_types = {i for i, p in enumerate(leaves) if isinstance(_walk(self._df.schema, p, True)[1], T.NullType)}
        empty = counts["rows"] == 0
        dropped = [p for i, p in enumerate(leaves) if i in null_types or (not empty and counts[f"c{i}"] == 0)]
        df = _drop_paths(self._df, dropped) if dropped else self._df
        return self._checked(self._derive(df, choices=self._choices_kept(df)), totalThreshold)

    # -- choices --------------------------------------------------------------------------------

    def resolveChoice(
        self,
        specs=None,
        choice="",
        database=None,
        table_name=None,
        transformation_ctx="",
        info="",
        stageThreshold=0,
        totalThreshold=0,
        catalog_id=None,
    ):
        """Resolves choice columns: ``specs`` is a list of (path, action) or ``choice`` one
        action for every choice column. Actions: ``cast:<type>`` (every value converted; those
        that do not convert become null), ``project:<type>`` (only the values of that type kept),
        ``make_cols`` (a ``<name>_<type>`` column per type), ``make_struct`` (a struct with a
        field per type). ``cast`` and ``project`` on an ordinary column cast it."""
        if specs is None and not choice:
            raise ValueError("Parameter specs and option are both missing, add one.")
        if specs is not None and choice:
            raise ValueError("Parameter specs and option are both specified, choose one.")
        if isinstance(specs, tuple):
            specs = [specs]
        if specs is None:
            specs = [(name, choice) for name in self._choices]
        df, choices = self._apply_specs(list(specs))
        return self._checked(self._derive(df, choices=choices), totalThreshold)

    def _apply_specs(self, specs):
        df = self._df
        choices = dict(self._choices)
        for path, action in specs:
            df, choices = self._resolve_one(df, choices, path, str(action))
        return df, {k: v for k, v in choices.items() if k in df.columns}

    def _resolve_one(self, df, choices, path, action):
        verb, _, target = action.partition(":")
        verb = verb.strip().lower()
        target = target.strip()
        if verb == "match_catalog":
            raise unsupported("DynamicFrame", "resolveChoice(match_catalog)")
        if verb not in ("cast", "project", "make_cols", "make_struct"):
            raise ValueError(f"Unknown resolveChoice action {action!r}")
        if verb in ("cast", "project") and not target:
            raise ValueError(f"resolveChoice action {action!r} needs a type")
        found = _resolve(df.schema, path)
        if found is None:
            return df, choices
        names, dtype = found
        if len(names) == 1 and names[0] in choices:
            name = names[0]
            types = choices.pop(name)
            text = _col(name).cast("string")
            if verb == "cast":
                return _replace_top(df, name, _text_as(df, text, target)), choices
            if verb == "project":
                return _replace_top(df, name, _project(df, text, types, target)), choices
            if verb == "make_struct":
                fields = [_project(df, text, types, t).alias(t) for t in types]
                return _replace_top(df, name, F.struct(*fields)), choices
            cols = []
            for column in df.columns:
                if column == name:
                    cols.extend(_project(df, text, types, t).alias(f"{name}_{t}") for t in types)
                else:
                    cols.append(_col(column))
            return df.select(*cols), choices
        if verb in ("cast", "project"):
            spark_target = _gt.spark_type_for(target)
            if spark_target is None:
                raise ValueError(f"Unknown type {target!r} in resolveChoice action {action!r}")
            return _put(df, names, _cast(_col(names), dtype, spark_target), True), choices
        return df, choices

    # -- record transforms ----------------------------------------------------------------------

    def filter(self, f, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """Keeps the records for which ``f(record)`` is true. ``f`` gets a DynamicRecord (a dict
        that also allows attribute access). A KeyError, ValueError or TypeError in ``f`` drops
        the record; any other exception makes it an error record."""
        df = self._df
        if not df.columns:
            return self._derive(df, choices=self._choices)
        choices = dict(self._choices)
        ctx, inf = transformation_ctx, info

        def judge(row):
            try:
                keep = f(record_from_row(row, choices))
            except (KeyError, ValueError, TypeError):
                return (0, None)
            except Exception as exc:
                return (2, error_tuple(str(exc) or type(exc).__name__, exc, "Filter", ctx, inf, row)[0])
            return (1 if keep else 0, None)

        verdict_type = T.StructType(
            [T.StructField("code", T.IntegerType()), T.StructField("error", ERROR_SCHEMA.fields[0].dataType)]
        )
        verdict = "__glue_filter_verdict"
        while verdict in df.columns:
            verdict += "_"
        judged = df.withColumn(verdict, F.udf(judge, verdict_type)(F.struct(*[_col(c) for c in df.columns])))
        kept = judged.where(F.col(verdict).getField("code") == 1).select(*[_col(c) for c in df.columns])
        errors = judged.where(F.col(verdict).getField("code") == 2).select(
            F.col(verdict).getField("error").alias("error")
        )
        frame = self._derive(kept, choices=self._choices, stage_errors=errors)
        return self._checked(frame, totalThreshold, stageThreshold)

    def map(self, f, preservesPartitioning=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        """A frame of ``f(record)`` for every record: ``f`` gets a DynamicRecord and returns a
        dict (or DynamicRecord). A record for which ``f`` raises or returns None becomes an error
        record (``errorsCount``, ``errorsAsDynamicFrame``). The result's schema is inferred from
        the returned dicts; fields whose type did not change keep the input's type."""
        if isinstance(preservesPartitioning, str):
            # AWS's documentation lists (f, transformation_ctx, info, ...) without it: by position
            # those arguments arrive one place early.
            preservesPartitioning, transformation_ctx, info, stageThreshold, totalThreshold = (
                False,
                preservesPartitioning,
                transformation_ctx or "",
                info or 0,
                stageThreshold or 0,
            )
        choices = dict(self._choices)
        ctx, inf = transformation_ctx, info

        def run(rows):
            for row in rows:
                try:
                    out = f(record_from_row(row, choices))
                except Exception as exc:
                    message = str(exc) or type(exc).__name__
                    yield (False, error_tuple(message, exc, "Map", ctx, inf, record_from_row(row, choices)))
                    continue
                if out is None or not isinstance(out, (Mapping, T.Row)):
                    got = "None" if out is None else type(out).__name__
                    message = f"User-specified function returned {got} instead of DynamicRecord"
                    yield (False, error_tuple(message, None, "Map", ctx, inf, record_from_row(row, choices)))
                    continue
                yield (True, to_plain(out))

        results = self._df.rdd.mapPartitions(run, preservesPartitioning).persist(StorageLevel.MEMORY_AND_DISK)
        good = results.filter(lambda item: item[0]).map(lambda item: item[1])
        bad = results.filter(lambda item: not item[0]).map(lambda item: item[1])
        spark = self._df.sparkSession
        inferred = good.map(infer_record_type).fold(T.NullType(), merge_types)
        choices_out: dict = {}
        if isinstance(inferred, tuple) and inferred[0] == "struct":
            originals = {fl.name: fl.dataType for fl in self._df.schema.fields}
            schema = T.StructType(
                [T.StructField(n, _gt.reconcile_type(t, originals.get(n), choices_out, name=n)) for n, t in inferred[1]]
            )
        else:
            schema = T.StructType([])
        fields = schema.fields
        rows = good.map(lambda d: tuple(conform_value(d.get(fl.name), fl.dataType) for fl in fields))
        df = spark.createDataFrame(rows, schema, verifySchema=False)
        errors = spark.createDataFrame(bad, ERROR_SCHEMA, verifySchema=False)
        frame = self._derive(df, choices=choices_out, stage_errors=errors)
        return self._checked(frame, totalThreshold, stageThreshold)

    # -- nested data ----------------------------------------------------------------------------

    def unbox(self, path, format, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0, **options):
        """Parses the string field at ``path`` (``format="json"``) into a struct or array whose
        schema is inferred from all the values."""
        if str(format).lower() != "json":
            raise unsupported("DynamicFrame", f"unbox(format={format!r})")
        found = _resolve(self._df.schema, path)
        if found is None:
            return self._derive(self._df, choices=self._choices)
        names, _ = found
        parsed = _parse_json(self._df, _col(names).cast("string"))
        df = _put(self._df, names, parsed, True)
        choices = {k: v for k, v in self._choices.items() if k in df.columns and [k] != names}
        return self._checked(self._derive(df, choices=choices), totalThreshold)

    def relationalize(
        self,
        root_table_name,
        staging_path,
        options=None,
        transformation_ctx="",
        info="",
        stageThreshold=0,
        totalThreshold=0,
    ):
        """Flattens structs into ``a.b`` columns and pivots every array into its own frame.

        The root frame (``root_table_name``) keeps each array column as a long join key; the
        frame ``<root>_<column>`` holds ``id`` (that key), ``index`` (position in the array)
        and the element as ``<column>.val`` (``<column>.val.<field>`` for structs), recursively
        for arrays inside arrays. ``staging_path`` is accepted and not written.
        """
        tables: dict = {}
        _relationalize(self._df, root_table_name, root_table_name, tables)
        frames = {}
        for table_name, df in tables.items():
            choices = self._choices_kept(df) if table_name == root_table_name else None
            frames[table_name] = self._derive(df, name=table_name, choices=choices)
        return DynamicFrameCollection(frames, self.glue_ctx)

    # -- output ---------------------------------------------------------------------------------

    def write(self, connection_type, connection_options=None, format=None, format_options=None, accumulator_size=0):
        return self.glue_ctx.write_from_options(
            frame_or_dfc=self,
            connection_type=connection_type,
            connection_options=connection_options or {},
            format=format,
            format_options=format_options or {},
            accumulator_size=accumulator_size,
        )

    def spigot(self, path, options=None, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        raise unsupported("DynamicFrame", "spigot")


def _normalize_mapping(mapping):
    if not isinstance(mapping, (tuple, list)):
        raise TypeError(f"Mapping must be specified as a tuple. Got {mapping!r}")
    if len(mapping) == 4:
        return tuple(mapping)
    if len(mapping) == 3:
        if _gt.is_type_name(mapping[2]):
            return mapping[0], None, mapping[1], mapping[2]
        if _gt.is_type_name(mapping[1]):
            return mapping[0], mapping[1], mapping[2], mapping[1]
        raise ValueError(f"Mapping {mapping!r} names no type")
    if len(mapping) == 2:
        return mapping[0], None, mapping[1], None
    raise ValueError(f"Mapping tuple must be of length 2, 3, or 4. Got tuple of length {len(mapping)}")


def _relationalize(df: DataFrame, table_name: str, root_name: str, tables: dict) -> None:
    flat = _flatten(df)
    arrays = [f.name for f in flat.schema.fields if isinstance(f.dataType, T.ArrayType)]
    if not arrays:
        tables[table_name] = flat
        return
    key = "__glue_relationalize_key"
    while key in flat.columns:
        key += "_"
    # Keys 1, 2, 3... in row order, materialised so the root table and the pivoted tables see
    # the same values however often they are computed.
    order = Window.orderBy(F.monotonically_increasing_id())
    keyed = flat.withColumn(key, F.row_number().over(order).cast("long")).localCheckpoint(eager=True)
    cols = []
    for column in flat.columns:
        if column in arrays:
            cols.append(F.when(_col(column).isNull(), F.lit(None).cast("long")).otherwise(_col(key)).alias(column))
        else:
            cols.append(_col(column))
    tables[table_name] = keyed.select(*cols)
    for column in arrays:
        child = keyed.select(_col(key).alias("id"), F.posexplode(_col(column)).alias("index", f"{column}.val"))
        _relationalize(child, f"{root_name}_{column}", root_name, tables)


# ---------------------------------------------------------------------------------------------
# DynamicFrameCollection, reader and writer
# ---------------------------------------------------------------------------------------------


class DynamicFrameCollection:
    """Named DynamicFrames (what relationalize, split_fields and split_rows return)."""

    def __init__(self, dynamic_frames, glue_ctx):
        self._glue_ctx = glue_ctx
        if isinstance(dynamic_frames, list):
            self._df_dict = {frame.name: frame for frame in dynamic_frames}
        elif isinstance(dynamic_frames, dict):
            self._df_dict = dict(dynamic_frames)
        else:
            raise TypeError("dynamic_frames must be list or dict.")

    def __getattr__(self, name):
        if _is_dunder(name):
            raise AttributeError(name)
        raise unsupported("DynamicFrameCollection", name)

    def __getitem__(self, key):
        return self._df_dict[key]

    def __len__(self):
        return len(self._df_dict)

    def __iter__(self):
        return iter(self._df_dict)

    def __contains__(self, key):
        return key in self._df_dict

    def __repr__(self):
        return f"DynamicFrameCollection({list(self._df_dict)!r})"

    def keys(self):
        return self._df_dict.keys()

    def values(self):
        return self._df_dict.values()

    def select(self, key, transformation_ctx=""):
        """The frame named ``key``; an empty frame if there is none (as AWS)."""
        if key in self._df_dict:
            return self._df_dict[key]
        session = _session_of(self._glue_ctx)
        return DynamicFrame(session.createDataFrame([], T.StructType([])), self._glue_ctx, key)

    def map(self, callable, transformation_ctx=""):
        """A collection of ``callable(frame, transformation_ctx + ":" + key)`` for every frame."""
        result = {}
        for key, frame in self._df_dict.items():
            out = callable(frame, f"{transformation_ctx}:{key}")
            if not isinstance(out, DynamicFrame):
                raise TypeError(f"callable must return a DynamicFrame. Got {type(out)}")
            result[key] = out
        return DynamicFrameCollection(result, self._glue_ctx)

    def flatmap(self, f, transformation_ctx=""):
        """A collection of what ``f(frame, ctx)`` returns for every frame (frames or collections)."""
        result = {}
        for frame in self._df_dict.values():
            out = f(frame, f"{transformation_ctx}:{frame.name}")
            if isinstance(out, DynamicFrame):
                result[out.name] = out
            elif isinstance(out, DynamicFrameCollection):
                result.update(out._df_dict)
            else:
                raise TypeError(
                    f"Function argument to flatmap must return DynamicFrame or DynamicFrameCollection. Got {type(out)}"
                )
        return DynamicFrameCollection(result, self._glue_ctx)

    flatMap = flatmap


def _database_argument(database, kwargs) -> str:
    """``database``, or AWS's older spelling ``name_space`` (taken out of ``kwargs``)."""
    if database is not None and "name_space" in kwargs:
        raise ValueError("Parameter name_space and database are both specified, choose one.")
    if database is None and "name_space" not in kwargs:
        raise ValueError("Parameter name_space or database is missing.")
    return kwargs.pop("name_space") if "name_space" in kwargs else database


class DynamicFrameReader:
    """``glueContext.create_dynamic_frame``: each method calls the GlueContext method it names."""

    def __init__(self, glue_context):
        self._glue_context = glue_context

    def __getattr__(self, name):
        if _is_dunder(name):
            raise AttributeError(name)
        raise unsupported("DynamicFrameReader", name)

    def from_rdd(self, data, name, schema=None, sampleRatio=None):
        return self._glue_context.create_dynamic_frame_from_rdd(data, name, schema, sampleRatio)

    def from_options(
        self,
        connection_type,
        connection_options=None,
        format=None,
        format_options=None,
        transformation_ctx="",
        push_down_predicate="",
        **kwargs,
    ):
        return self._glue_context.create_dynamic_frame_from_options(
            connection_type,
            connection_options or {},
            format,
            format_options or {},
            transformation_ctx,
            push_down_predicate,
            **kwargs,
        )

    def from_catalog(
        self,
        database=None,
        table_name=None,
        redshift_tmp_dir="",
        transformation_ctx="",
        push_down_predicate="",
        additional_options=None,
        catalog_id=None,
        **kwargs,
    ):
        db = _database_argument(database, kwargs)
        if table_name is None:
            raise ValueError("Parameter table_name is missing.")
        return self._glue_context.create_dynamic_frame_from_catalog(
            db,
            table_name,
            redshift_tmp_dir,
            transformation_ctx,
            push_down_predicate,
            additional_options or {},
            catalog_id,
            **kwargs,
        )


class DynamicFrameWriter:
    """``glueContext.write_dynamic_frame``: each method calls the GlueContext method it names."""

    def __init__(self, glue_context):
        self._glue_context = glue_context

    def __getattr__(self, name):
        if _is_dunder(name):
            raise AttributeError(name)
        raise unsupported("DynamicFrameWriter", name)

    def from_options(
        self, frame, connection_type, connection_options=None, format=None, format_options=None, transformation_ctx=""
    ):
        return self._glue_context.write_dynamic_frame_from_options(
            frame, connection_type, connection_options or {}, format, format_options or {}, transformation_ctx
        )

    def from_catalog(
        self,
        frame,
        database=None,
        table_name=None,
        redshift_tmp_dir="",
        transformation_ctx="",
        additional_options=None,
        catalog_id=None,
        **kwargs,
    ):
        db = _database_argument(database, kwargs)
        if table_name is None:
            raise ValueError("Parameter table_name is missing.")
        return self._glue_context.write_dynamic_frame_from_catalog(
            frame, db, table_name, redshift_tmp_dir, transformation_ctx, additional_options or {}, catalog_id, **kwargs
        )

    def from_jdbc_conf(
        self, frame, catalog_connection, connection_options=None, redshift_tmp_dir="", transformation_ctx=""
    ):
        return self._glue_context.write_dynamic_frame_from_jdbc_conf(
            frame, catalog_connection, connection_options or {}, redshift_tmp_dir, transformation_ctx
        )
