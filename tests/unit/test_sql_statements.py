"""etl_toolkit.sql.statements: a SQL file split into the statements the runner executes one by one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl_toolkit.sql import statements

ROOT = Path(__file__).resolve().parents[2]
ECOMMERCE_SQL = sorted((ROOT / "include" / "sql" / "ecommerce").glob("*.sql"))

# What a semicolon inside does not end a statement: comments, string literals, dollar-quoted bodies.
# One alternation, scanned left to right, so a quote inside a comment (or the reverse) is not mistaken.
_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$", re.DOTALL)


def code(statement: str) -> str:
    """The statement's text outside comments, literals and dollar-quoted bodies."""
    return _NOT_CODE.sub(" ", statement)


def test_statements_are_split_on_semicolons():
    assert statements("SELECT 1;\nSELECT 2;\n\nUPDATE t SET a = 1;") == [
        "SELECT 1;",
        "SELECT 2;",
        "UPDATE t SET a = 1;",
    ]


def test_a_dollar_quoted_do_block_stays_one_statement():
    block = "DO $$\nBEGIN\n    PERFORM 1;\n    PERFORM 2;\nEND\n$$;"

    assert statements(f"{block}\nSELECT 3;") == [block, "SELECT 3;"]


def test_a_function_body_with_a_named_dollar_tag_stays_one_statement():
    function = (
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n    RAISE NOTICE 'a;b';\n    PERFORM 1;\nEND\n$body$;"
    )

    assert statements(f"SELECT 0;\n{function}") == ["SELECT 0;", function]


def test_a_semicolon_inside_a_string_literal_does_not_split():
    assert statements("SELECT 'a;b' AS x;\nSELECT 'it''s; fine';") == [
        "SELECT 'a;b' AS x;",
        "SELECT 'it''s; fine';",
    ]


def test_stretches_of_comments_alone_are_not_statements():
    text = "-- a header\n-- over two lines\n\n/* a block\n   comment; with a semicolon */\n"

    assert statements(text) == []
    assert statements(f"SELECT 1;\n{text}") == ["SELECT 1;"]


def test_a_comment_before_a_statement_stays_with_it():
    assert statements("-- why\nSELECT 1;\n-- and why not\nSELECT 2;") == [
        "-- why\nSELECT 1;",
        "-- and why not\nSELECT 2;",
    ]


@pytest.mark.parametrize("text", ["SELECT 1;", "SELECT 1", "  SELECT 1;  \n\n", "-- one\nSELECT 1;\n"])
def test_a_text_of_one_statement_gives_one(text):
    assert len(statements(text)) == 1


def test_placeholders_and_doubled_percent_signs_are_left_as_they_are():
    text = "SELECT format('%%s', %(batch_id)s);\nSELECT %(batch_id)s;"

    assert statements(text) == ["SELECT format('%%s', %(batch_id)s);", "SELECT %(batch_id)s;"]


def test_the_ecommerce_sql_folder_has_files():
    assert ECOMMERCE_SQL, "include/sql/ecommerce/ has no .sql file"


@pytest.mark.parametrize("path", ECOMMERCE_SQL, ids=[path.name for path in ECOMMERCE_SQL])
def test_each_ecommerce_sql_file_splits_into_whole_non_empty_statements(path):
    text = path.read_text()

    parts = statements(text)

    assert parts, f"{path.name} gives no statement"
    for part in parts:
        assert code(part).strip(" \n;"), f"{path.name}: a statement with no code: {part!r}"
        # Exactly one statement: one semicolon outside quotes and comments, the one that ends it.
        assert code(part).count(";") == 1 and code(part).rstrip().endswith(";"), f"{path.name}: {part!r}"
    # Nothing outside a statement but comments and whitespace is lost.
    assert "".join(code("\n".join(parts)).split()) == "".join(code(text).split())
