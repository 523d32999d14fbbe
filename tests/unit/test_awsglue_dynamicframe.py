"""awsglue for local runs: DynamicFrame, DynamicFrameCollection and the transforms.

One local SparkSession for the module; every test builds small frames with real rows and
compares what comes out row by row. Choice columns are built as the readers build them: a
string column holding each value's text, with its types passed through ``choices``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "devstack" / "glue_spark"))

import awsglue.transforms as transforms_module  # noqa: E402
from awsglue._local.unsupported import LocalGlueUnsupported  # noqa: E402
from awsglue.dynamicframe import DynamicFrame, DynamicFrameCollection, ResolveOption  # noqa: E402
from awsglue.gluetypes import ChoiceType, DynamicRecord, IntegerType, StringType  # noqa: E402
from awsglue.transforms import (  # noqa: E402
    ApplyMapping,
    DropFields,
    DropNullFields,
    Filter,
    Join,
    Map,
    Relationalize,
    RenameField,
    ResolveChoice,
    SelectFields,
    SelectFromCollection,
    SplitFields,
    SplitRows,
    Unbox,
)
from pyspark.sql import SparkSession  # noqa: E402

ORDERS_DDL = (
    "id int, name string, price string, address struct<city:string,zip:string>, "
    "tags array<string>, lines array<struct<sku:string,qty:int>>"
)
ORDERS = [
    (1, "ann", "12", ("Leeds", "LS1"), ["new", "vip"], [("a", 1), ("b", 2)]),
    (2, "bob", "n/a", ("York", None), [], None),
    (3, None, "7.5", None, ["old"], [("c", 3)]),
]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    active = SparkSession.getActiveSession()
    if active is not None:  # another module's session, configured for its own needs
        active.stop()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("test_awsglue_dynamicframe")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def orders(spark: SparkSession) -> DynamicFrame:
    """Three orders; ``price`` is a choice of int and string (as a JSON reader reports it)."""
    df = spark.createDataFrame(ORDERS, ORDERS_DDL)
    return DynamicFrame(df, None, "orders", choices={"price": ("int", "string")})


def rows(frame: DynamicFrame, order_by: str | None = "id") -> list[dict]:
    df = frame.toDF()
    if order_by:
        df = df.orderBy(order_by)
    return [r.asDict(recursive=True) for r in df.collect()]


# -- construction and information ------------------------------------------------------------


def test_fromdf_todf_count_and_name(spark: SparkSession):
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string")
    frame = DynamicFrame.fromDF(df, None, "things")
    assert frame.name == "things"
    assert frame.glue_ctx is None
    assert frame.count() == 2
    assert frame.toDF() is df
    assert rows(frame) == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert frame.getNumPartitions() == df.rdd.getNumPartitions()
    assert frame.repartition(3).getNumPartitions() == 3
    assert frame.repartition(3).coalesce(1).getNumPartitions() == 1


def test_schema_and_print_schema_in_glue_style(orders: DynamicFrame, capsys):
    schema = orders.schema()
    assert [f.name for f in schema] == ["id", "name", "price", "address", "tags", "lines"]
    assert schema.getField("id").dataType == IntegerType()
    assert schema.getField("price").dataType == ChoiceType([IntegerType(), StringType()])
    orders.printSchema()
    assert capsys.readouterr().out == (
        "root\n"
        "|-- id: int\n"
        "|-- name: string\n"
        "|-- price: choice\n"
        "|    |-- int\n"
        "|    |-- string\n"
        "|-- address: struct\n"
        "|    |-- city: string\n"
        "|    |-- zip: string\n"
        "|-- tags: array\n"
        "|    |-- element: string\n"
        "|-- lines: array\n"
        "|    |-- element: struct\n"
        "|    |    |-- sku: string\n"
        "|    |    |-- qty: int\n"
    )


def test_show_prints_records_as_json(orders: DynamicFrame, capsys):
    orders.show(2)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == [
        {
            "id": 1,
            "name": "ann",
            "price": 12,
            "address": {"city": "Leeds", "zip": "LS1"},
            "tags": ["new", "vip"],
            "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
        },
        {
            "id": 2,
            "name": "bob",
            "price": "n/a",
            "address": {"city": "York", "zip": None},
            "tags": [],
            "lines": None,
        },
    ]


def test_todf_turns_an_unresolved_choice_into_a_struct(orders: DynamicFrame):
    assert [r["price"] for r in rows(orders)] == [
        {"int": 12, "string": None},
        {"int": None, "string": "n/a"},
        {"int": None, "string": "7.5"},
    ]
    projected = orders.toDF([ResolveOption("price", "Project", "int")]).orderBy("id")
    assert [r.price for r in projected.collect()] == [12, None, None]


# -- apply_mapping ---------------------------------------------------------------------------


def test_apply_mapping_renames_casts_nests_and_drops_missing_sources(orders: DynamicFrame):
    mapped = orders.apply_mapping(
        [
            ("id", "int", "order_id", "string"),
            ("address.city", "string", "ship.city", "string"),
            ("name", "string", "ship.to", "string"),
            ("price", "string", "price", "double"),
            ("no_such_field", "string", "ghost", "string"),
        ]
    )
    assert mapped.toDF().columns == ["order_id", "ship", "price"]
    assert rows(mapped, "order_id") == [
        {"order_id": "1", "ship": {"city": "Leeds", "to": "ann"}, "price": 12.0},
        {"order_id": "2", "ship": {"city": "York", "to": "bob"}, "price": None},
        {"order_id": "3", "ship": {"city": None, "to": None}, "price": 7.5},
    ]
    assert "price" not in mapped.schema().field_map or not isinstance(
        mapped.schema().getField("price").dataType, ChoiceType
    )


def test_apply_mapping_casts_between_glue_types(spark: SparkSession):
    df = spark.createDataFrame(
        [("1", "2024-03-01", "2024-03-01 10:30:00", "12.345", "true", "9000000000", "x")],
        "a string, d string, ts string, dec string, flag string, big string, bad string",
    )
    mapped = ApplyMapping.apply(
        frame=DynamicFrame(df, None, "raw"),
        mappings=[
            ("a", "string", "a_int", "int"),
            ("a", "string", "a_long", "long"),
            ("a", "string", "a_bigint", "bigint"),
            ("a", "string", "a_float", "float"),
            ("d", "string", "d", "date"),
            ("ts", "string", "ts", "timestamp"),
            ("dec", "string", "dec", "decimal(10,2)"),
            ("dec", "string", "dec_default", "decimal"),
            ("flag", "string", "flag", "boolean"),
            ("big", "string", "big", "long"),
            ("big", "string", "big_int", "int"),
            ("bad", "string", "bad", "int"),
            ("A", "string", "case_insensitive", "string"),
        ],
    )
    types = {f.name: f.dataType.simpleString() for f in mapped.toDF().schema.fields}
    assert types == {
        "a_int": "int",
        "a_long": "bigint",
        "a_bigint": "bigint",
        "a_float": "float",
        "d": "date",
        "ts": "timestamp",
        "dec": "decimal(10,2)",
        "dec_default": "decimal(10,2)",
        "flag": "boolean",
        "big": "bigint",
        "big_int": "int",
        "bad": "int",
        "case_insensitive": "string",
    }
    assert rows(mapped, None) == [
        {
            "a_int": 1,
            "a_long": 1,
            "a_bigint": 1,
            "a_float": 1.0,
            "d": dt.date(2024, 3, 1),
            "ts": dt.datetime(2024, 3, 1, 10, 30),
            "dec": Decimal("12.35"),
            "dec_default": Decimal("12.35"),
            "flag": True,
            "big": 9000000000,
            "big_int": None,
            "bad": None,
            "case_insensitive": "1",
        }
    ]
    assert mapped.schema().getField("big").dataType.typeName() == "long"


def test_apply_mapping_short_tuples_and_back_ticks(spark: SparkSession):
    df = spark.createDataFrame([(1, "x", 5)], "id int, `a.b` string, n int")
    mapped = DynamicFrame(df, None, "t").apply_mapping(
        [("id", "key"), ("`a.b`", "string", "ab"), ("n", "total", "long")]
    )
    assert mapped.toDF().schema.simpleString() == "struct<key:int,ab:string,total:bigint>"
    assert rows(mapped, None) == [{"key": 1, "ab": "x", "total": 5}]


# -- field transforms ------------------------------------------------------------------------


def test_drop_and_select_fields_top_level_and_nested(orders: DynamicFrame):
    dropped = DropFields.apply(frame=orders, paths=["address.zip", "tags", "lines", "missing"])
    assert dropped.toDF().columns == ["id", "name", "price", "address"]
    assert [r["address"] for r in rows(dropped)] == [{"city": "Leeds"}, {"city": "York"}, None]
    assert dropped.schema().getField("price").dataType == ChoiceType([IntegerType(), StringType()])

    selected = SelectFields.apply(frame=orders, paths=["address.city", "id", "missing"])
    assert rows(selected) == [
        {"id": 1, "address": {"city": "Leeds"}},
        {"id": 2, "address": {"city": "York"}},
        {"id": 3, "address": None},
    ]
    assert orders.select_fields("name").toDF().columns == ["name"]


def test_rename_field_top_level_nested_and_moved(orders: DynamicFrame):
    renamed = RenameField.apply(frame=orders, old_name="price", new_name="cost")
    assert renamed.toDF().columns == ["id", "name", "cost", "address", "tags", "lines"]
    assert isinstance(renamed.schema().getField("cost").dataType, ChoiceType)

    nested = orders.rename_field("address.city", "address.town")
    assert [r["address"] for r in rows(nested)] == [
        {"town": "Leeds", "zip": "LS1"},
        {"town": "York", "zip": None},
        None,
    ]

    moved = orders.rename_field("address.city", "city").select_fields(["id", "address", "city"])
    assert rows(moved) == [
        {"id": 1, "address": {"zip": "LS1"}, "city": "Leeds"},
        {"id": 2, "address": {"zip": None}, "city": "York"},
        {"id": 3, "address": None, "city": None},
    ]


def test_rename_field_with_dots_in_the_name(spark: SparkSession):
    frame = DynamicFrame(spark.createDataFrame([(1,)], "`this.old.name` int"), None, "t")
    assert rows(frame.rename_field("`this.old.name`", "thisNewName"), None) == [{"thisNewName": 1}]


# -- resolveChoice ---------------------------------------------------------------------------


def test_resolve_choice_cast_and_project(orders: DynamicFrame):
    cast = orders.resolveChoice(specs=[("price", "cast:double")])
    assert cast.schema().getField("price").dataType.typeName() == "double"
    assert [r["price"] for r in rows(cast)] == [12.0, None, 7.5]

    projected = ResolveChoice.apply(frame=orders, specs=[("price", "project:int")])
    assert [r["price"] for r in rows(projected)] == [12, None, None]
    as_string = orders.resolveChoice(specs=[("price", "project:string")])
    assert [r["price"] for r in rows(as_string)] == [None, "n/a", "7.5"]
    as_long = orders.resolveChoice(specs=[("price", "project:long")])
    assert [r["price"] for r in rows(as_long)] == [12, None, None]


def test_resolve_choice_make_cols_and_make_struct(orders: DynamicFrame):
    cols = orders.resolveChoice(choice="make_cols")
    assert cols.toDF().columns == ["id", "name", "price_int", "price_string", "address", "tags", "lines"]
    assert [(r["price_int"], r["price_string"]) for r in rows(cols)] == [(12, None), (None, "n/a"), (None, "7.5")]

    struct = ResolveChoice.apply(orders, specs=[("price", "make_struct")])
    assert struct.toDF().schema["price"].dataType.simpleString() == "struct<int:int,string:string>"
    assert [r["price"] for r in rows(struct)] == [
        {"int": 12, "string": None},
        {"int": None, "string": "n/a"},
        {"int": None, "string": "7.5"},
    ]
    assert not any(isinstance(f.dataType, ChoiceType) for f in struct.schema())


def test_resolve_choice_casts_ordinary_columns_and_checks_its_arguments(orders: DynamicFrame):
    cast = orders.resolveChoice(specs=[("id", "cast:string"), ("address.zip", "cast:int")])
    assert [(r["id"], r["address"]) for r in rows(cast, None)] == [
        ("1", {"city": "Leeds", "zip": None}),
        ("2", {"city": "York", "zip": None}),
        ("3", None),
    ]
    with pytest.raises(ValueError, match="both missing"):
        orders.resolveChoice()
    with pytest.raises(ValueError, match="both specified"):
        orders.resolveChoice(specs=[("price", "make_cols")], choice="make_cols")
    with pytest.raises(LocalGlueUnsupported, match="match_catalog"):
        orders.resolveChoice(choice="match_catalog", database="db", table_name="t")


# -- filter and map --------------------------------------------------------------------------


def test_filter_gets_dynamic_records(orders: DynamicFrame):
    # "n/a" > 10 raises TypeError: as in AWS Glue the record is dropped, not an error
    kept = Filter.apply(frame=orders, f=lambda r: r["price"] > 10)
    assert [r["id"] for r in rows(kept)] == [1]
    assert kept.errorsCount() == 0
    assert kept.schema().getField("price").dataType == ChoiceType([IntegerType(), StringType()])
    assert [r["id"] for r in rows(orders.filter(lambda r: r.address.city == "York"))] == [2]
    assert [r["id"] for r in rows(orders.filter(lambda r: isinstance(r, DynamicRecord) and "old" in r.tags))] == [3]
    assert [r["id"] for r in rows(orders.filter(lambda r: r["lines"][1]["qty"] == 2))] == [1]
    missing = orders.filter(lambda r: r.no_such_field == 1)
    assert (missing.count(), missing.errorsCount()) == (0, 0)


def test_filter_records_an_error_for_other_exceptions(orders: DynamicFrame):
    def picky(record):
        if record["id"] == 2:
            raise RuntimeError("cannot judge bob")
        return True

    kept = orders.filter(picky, transformation_ctx="picky", info="filtering")
    assert [r["id"] for r in rows(kept)] == [1, 3]
    assert kept.stageErrorsCount() == 1
    errors = [r["error"] for r in rows(kept.errorsAsDynamicFrame(), None)]
    assert [(e["msg"], e["transformation"], e["transformationContext"], e["info"]) for e in errors] == [
        ("cannot judge bob", "Filter", "picky", "filtering")
    ]
    assert json.loads(errors[0]["input"])["name"] == "bob"
    assert "RuntimeError" in errors[0]["stackTrace"]


def test_map_builds_new_records_and_counts_errors(orders: DynamicFrame):
    def reshape(record):
        if record["name"] is None:
            raise ValueError("no name")
        record["label"] = record["name"].upper()
        record["qty"] = sum(line["qty"] for line in record["lines"] or [])
        del record["tags"]
        del record["price"]
        return record

    mapped = Map.apply(frame=orders, f=reshape, transformation_ctx="reshape")
    assert mapped.toDF().columns == ["id", "name", "address", "lines", "label", "qty"]
    assert mapped.toDF().schema["id"].dataType.simpleString() == "int"
    assert mapped.toDF().schema["qty"].dataType.simpleString() == "bigint"
    assert rows(mapped) == [
        {
            "id": 1,
            "name": "ann",
            "address": {"city": "Leeds", "zip": "LS1"},
            "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
            "label": "ANN",
            "qty": 3,
        },
        {"id": 2, "name": "bob", "address": {"city": "York", "zip": None}, "lines": None, "label": "BOB", "qty": 0},
    ]
    assert mapped.errorsCount() == 1
    assert mapped.stageErrorsCount() == 1
    [error] = [r["error"] for r in rows(mapped.errorsAsDynamicFrame(), None)]
    assert (error["msg"], error["transformation"], error["transformationContext"]) == ("no name", "Map", "reshape")
    assert json.loads(error["input"])["id"] == 3

    after = mapped.drop_fields(["lines"])
    assert after.errorsCount() == 1
    assert after.stageErrorsCount() == 0


def test_map_returning_none_or_conflicting_types(orders: DynamicFrame):
    def odd(record):
        if record["id"] == 3:
            return None
        return {"id": record["id"], "value": 1 if record["id"] == 1 else "one"}

    mapped = orders.map(odd, "odd_ctx")  # the documented positional order: f, transformation_ctx
    assert mapped.schema().getField("value").dataType == ChoiceType([IntegerType(), StringType()])
    cols = mapped.resolveChoice(choice="make_cols")
    assert [(r["id"], r["value_int"], r["value_string"]) for r in rows(cols)] == [(1, 1, None), (2, None, "one")]
    [error] = [r["error"] for r in rows(mapped.errorsAsDynamicFrame(), None)]
    assert error["msg"] == "User-specified function returned None instead of DynamicRecord"
    assert error["transformationContext"] == "odd_ctx"


def test_dynamic_record_is_a_dict_with_attributes():
    record = DynamicRecord({"a": 1})
    record.b = 2
    assert record == {"a": 1, "b": 2}
    assert record.a == 1
    with pytest.raises(AttributeError):
        record.missing  # noqa: B018


def test_error_thresholds(orders: DynamicFrame):
    def fail_two(record):
        if record["id"] > 1:
            raise RuntimeError("no")
        return record

    assert orders.map(fail_two, stageThreshold=2).stageErrorsCount() == 2
    with pytest.raises(RuntimeError, match="stageThreshold"):
        orders.map(fail_two, stageThreshold=1)
    with pytest.raises(RuntimeError, match="totalThreshold"):
        orders.map(fail_two).select_fields(["id"], totalThreshold=1)


# -- nested data -----------------------------------------------------------------------------


def test_relationalize_flattens_structs_and_pivots_arrays(orders: DynamicFrame):
    dfc = orders.relationalize("root", "s3://bucket/staging/")
    assert isinstance(dfc, DynamicFrameCollection)
    assert sorted(dfc.keys()) == ["root", "root_lines", "root_tags"]
    root = dfc.select("root")
    assert root.name == "root"
    assert root.toDF().columns == ["id", "name", "price", "address.city", "address.zip", "tags", "lines"]
    root_rows = rows(root.resolveChoice(choice="cast:string"))
    assert [(r["id"], r["address.city"], r["address.zip"]) for r in root_rows] == [
        (1, "Leeds", "LS1"),
        (2, "York", None),
        (3, None, None),
    ]
    assert root_rows[1]["lines"] is None
    assert dfc.select("root_tags").toDF().columns == ["id", "index", "tags.val"]
    assert dfc.select("root_lines").toDF().columns == ["id", "index", "lines.val.sku", "lines.val.qty"]

    # joining the pivoted tables back on the keys gives every array element of its order
    tags = dfc.select("root_tags").toDF()
    joined = (
        root.toDF()
        .join(tags, root.toDF()["tags"] == tags["id"])
        .select(root.toDF()["id"].alias("order"), "index", "`tags.val`")
    )
    assert sorted(tuple(r) for r in joined.collect()) == [(1, 0, "new"), (1, 1, "vip"), (3, 0, "old")]
    lines = dfc.select("root_lines").toDF()
    joined = (
        root.toDF()
        .join(lines, root.toDF()["lines"] == lines["id"])
        .select(root.toDF()["id"].alias("order"), "index", "`lines.val.sku`", "`lines.val.qty`")
    )
    assert sorted(tuple(r) for r in joined.collect()) == [(1, 0, "a", 1), (1, 1, "b", 2), (3, 0, "c", 3)]


def test_relationalize_arrays_inside_arrays(spark: SparkSession):
    df = spark.createDataFrame([(1, [[1, 2], [3]]), (2, None)], "k int, grid array<array<int>>")
    dfc = Relationalize.apply(frame=DynamicFrame(df, None, "g"), staging_path="/tmp/unused")
    assert sorted(dfc.keys()) == ["roottable", "roottable_grid", "roottable_grid.val"]
    root = rows(dfc.select("roottable"), "k")
    assert root[1]["grid"] is None
    outer = rows(dfc.select("roottable_grid"), "index")
    assert [(r["id"], r["index"]) for r in outer] == [(root[0]["grid"], 0), (root[0]["grid"], 1)]
    inner = rows(dfc.select("roottable_grid.val"), None)
    elements = {}
    for row in sorted(inner, key=lambda r: (r["id"], r["index"])):
        elements.setdefault(row["id"], []).append(row["grid.val.val"])
    assert [elements[r["grid.val"]] for r in outer] == [[1, 2], [3]]


def test_unnest_flattens_structs_only(orders: DynamicFrame):
    flat = orders.unnest()
    assert flat.toDF().columns == ["id", "name", "price", "address.city", "address.zip", "tags", "lines"]
    assert [(r["address.city"], r["tags"]) for r in rows(flat)] == [
        ("Leeds", ["new", "vip"]),
        ("York", []),
        (None, ["old"]),
    ]
    assert isinstance(flat.schema().getField("price").dataType, ChoiceType)
    assert flat.select_fields(["address.city"]).toDF().columns == ["address.city"]


def test_unbox_parses_json_strings(spark: SparkSession):
    df = spark.createDataFrame(
        [("TX", '{"strawberry": 220, "mango": "ripe", "crates": [1, 2]}'), ("CA", '{"strawberry": 34}'), ("CO", None)],
        "warehouse string, data string",
    )
    unboxed = Unbox.apply(frame=DynamicFrame(df, None, "w"), path="data", format="json")
    assert unboxed.toDF().schema["data"].dataType.simpleString() == (
        "struct<crates:array<bigint>,mango:string,strawberry:bigint>"
    )
    assert rows(unboxed, "warehouse") == [
        {"warehouse": "CA", "data": {"crates": None, "mango": None, "strawberry": 34}},
        {"warehouse": "CO", "data": None},
        {"warehouse": "TX", "data": {"crates": [1, 2], "mango": "ripe", "strawberry": 220}},
    ]
    with pytest.raises(LocalGlueUnsupported, match="unbox"):
        DynamicFrame(df, None, "w").unbox("data", "csv", separator="|")


def test_drop_null_fields_drops_fields_null_in_every_record(spark: SparkSession):
    df = spark.createDataFrame(
        [(1, None, ("x", None), None), (2, None, ("y", None), None)],
        "id int, empty string, inner struct<keep:string,gone:string>, nothing void",
    )
    cleaned = DropNullFields.apply(frame=DynamicFrame(df, None, "n"))
    assert cleaned.toDF().columns == ["id", "inner"]
    assert rows(cleaned) == [{"id": 1, "inner": {"keep": "x"}}, {"id": 2, "inner": {"keep": "y"}}]


# -- joins, splits and collections -----------------------------------------------------------


def test_join_keeps_both_sides_and_prefixes_clashing_names(orders: DynamicFrame, spark: SparkSession):
    customers = DynamicFrame(
        spark.createDataFrame(
            [("ann", "gold", 1), ("bob", "silver", 2), ("eve", "none", 9)], "cust string, tier string, id int"
        ),
        None,
        "customers",
    )
    joined = Join.apply(orders.select_fields(["id", "name"]), customers, "name", "cust")
    assert joined.name == "orderscustomers"
    assert joined.toDF().columns == ["id", "name", "cust", "tier", ".id"]
    assert rows(joined) == [
        {"id": 1, "name": "ann", "cust": "ann", "tier": "gold", ".id": 1},
        {"id": 2, "name": "bob", "cust": "bob", "tier": "silver", ".id": 2},
    ]
    on_two_keys = orders.select_fields(["id", "name"]).join(["id", "name"], ["id", "cust"], customers)
    assert [r["tier"] for r in rows(on_two_keys)] == ["gold", "silver"]


def test_split_fields_and_rows_give_collections(orders: DynamicFrame):
    split = SplitFields.apply(frame=orders, paths=["id", "name"])
    assert sorted(split.keys()) == ["orders1", "orders2"]
    assert split["orders1"].toDF().columns == ["id", "name"]
    assert split.select("orders2").toDF().columns == ["price", "address", "tags", "lines"]
    named = orders.split_fields(["id"], "ids", "rest")
    assert named.select("ids").name == "ids" and rows(named.select("ids")) == [{"id": 1}, {"id": 2}, {"id": 3}]

    by_rows = SplitRows.apply(orders, {"id": {">": 1, "<=": 3}}, "later", "first")
    assert [r["id"] for r in rows(by_rows.select("later"))] == [2, 3]
    assert [r["id"] for r in rows(by_rows.select("first"))] == [1]
    assert SelectFromCollection.apply(dfc=by_rows, key="first").name == "first"


def test_dynamic_frame_collection(orders: DynamicFrame):
    ids = orders.select_fields(["id"])
    names = orders.select_fields(["name"])
    ids.name, names.name = "ids", "names"
    dfc = DynamicFrameCollection({"ids": ids, "names": names}, None)
    assert len(dfc) == 2 and list(dfc.keys()) == ["ids", "names"]
    assert list(dfc.values()) == [ids, names]
    assert dfc.select("ids") is ids
    empty = dfc.select("nothing")
    assert (empty.name, empty.count(), empty.toDF().columns) == ("nothing", 0, [])

    counted = dfc.map(lambda frame, ctx: frame.apply_mapping([(frame.toDF().columns[0], "string", "value", "string")]))
    assert sorted(counted.keys()) == ["ids", "names"]
    assert [r["value"] for r in rows(counted.select("ids"), "value")] == ["1", "2", "3"]
    with pytest.raises(TypeError):
        dfc.map(lambda frame, ctx: "not a frame")

    def split_each(frame, ctx):
        return frame.split_rows({frame.toDF().columns[0]: {"!=": "ann"}}, frame.name + "_a", frame.name + "_b")

    flat = dfc.flatmap(lambda frame, ctx: frame if frame.name == "ids" else split_each(frame, ctx))
    assert sorted(flat.keys()) == ["ids", "names_a", "names_b"]
    assert sorted(DynamicFrameCollection([ids, names], None).keys()) == ["ids", "names"]


def test_union_and_merge(spark: SparkSession):
    source = DynamicFrame(spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string"), None, "s")
    stage = DynamicFrame(
        spark.createDataFrame([(2, "B", True), (3, "C", False)], "id int, v string, new boolean"), None, "t"
    )
    assert rows(source.union(stage)) == [
        {"id": 1, "v": "a", "new": None},
        {"id": 2, "v": "b", "new": None},
        {"id": 2, "v": "B", "new": True},
        {"id": 3, "v": "C", "new": False},
    ]
    assert rows(source.mergeDynamicFrame(stage, ["id"])) == [
        {"id": 1, "v": "a", "new": None},
        {"id": 2, "v": "B", "new": True},
        {"id": 3, "v": "C", "new": False},
    ]


# -- the API surface -------------------------------------------------------------------------


def test_transforms_star_import_exports_every_transform():
    namespace: dict = {}
    exec("from awsglue.transforms import *", namespace)
    expected = {
        "ApplyMapping",
        "DropFields",
        "DropNullFields",
        "Filter",
        "Join",
        "Map",
        "Relationalize",
        "RenameField",
        "ResolveChoice",
        "SelectFields",
        "SelectFromCollection",
        "SplitFields",
        "SplitRows",
        "Unbox",
        "UnnestFrame",
        "MapToCollection",
        "FlatMap",
        "ErrorsAsDynamicFrame",
    }
    assert expected <= set(namespace)
    assert ApplyMapping.name() == "ApplyMapping"
    described = json.loads(transforms_module.describe_transform("applymapping"))
    assert [a["name"] for a in described["transform"]["args"]][:3] == ["frame", "mappings", "case_sensitive"]


def test_unsupported_attributes_raise_local_glue_unsupported(orders: DynamicFrame):
    with pytest.raises(LocalGlueUnsupported, match=r"awsglue DynamicFrame\.simplify_ddb_json is not supported"):
        orders.simplify_ddb_json()
    with pytest.raises(NotImplementedError, match=r"DynamicFrame\.spigot"):
        orders.spigot("s3://bucket/samples/", {"topk": 5})
    with pytest.raises(LocalGlueUnsupported, match=r"DynamicFrameCollection\.nothing_here"):
        DynamicFrameCollection({}, None).nothing_here  # noqa: B018
    assert not hasattr(orders, "__array_interface__")
