"""Amazon Athena that really runs the SQL, for the local emulator.

moto's Athena (``moto.athena``) accepts any query, reports it SUCCEEDED and returns canned rows.
``install()`` replaces that, in the process that serves moto, with a query engine: a query's SQL
(Athena's, Trino's dialect) is transpiled to DuckDB's with sqlglot (``devstack.athena_sql``), its
tables are bound to the emulator's Glue Data Catalog (moto's in-process Glue backend: location,
format, columns, partitions), the objects they read are taken straight from moto's in-process S3
backend, and DuckDB runs it. What Athena's API does, this does:

- ``StartQueryExecution`` returns at once; a thread runs the query, which goes QUEUED -> RUNNING ->
  SUCCEEDED, FAILED or CANCELLED (``StopQueryExecution`` interrupts DuckDB). At most
  ``MAX_CONCURRENT_QUERIES`` run at once; the others wait QUEUED. ``ClientRequestToken`` makes the
  call idempotent, ``ExecutionParameters`` fill the ``?`` of the statement;
- ``GetQueryExecution`` (and ``BatchGetQueryExecution``) report the state, ``StateChangeReason``
  and ``AthenaError`` of a failure (``TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.db.t'
  does not exist``, ...), and ``Statistics``: the bytes of the S3 objects read, engine, queue and
  total times;
- ``GetQueryResults`` pages the result (``MaxResults`` up to 1000, ``NextToken``); a SELECT's
  first row is its header; ``ColumnInfo`` has Athena's type names; NULL is an empty Datum;
- the result is written where Athena writes it: ``<OutputLocation>/<QueryExecutionId>.csv`` (the
  header, then every value double-quoted, NULL empty) and ``<QueryExecutionId>.csv.metadata``.
  Athena's metadata file is a binary protobuf of the column info; this one is JSON
  (``{"ColumnInfo": [...]}``, the ``ResultSetMetadata`` of ``GetQueryResults``). The output
  location comes from the request or the workgroup (the workgroup's wins when it enforces its
  configuration); without either, StartQueryExecution fails as Athena's does;
- ``ListQueryExecutions`` (per workgroup, newest first, paged) and ``GetWorkGroup`` (an unknown
  workgroup is an InvalidRequestException).

Statements: SELECT and WITH queries (and UNION, INTERSECT, EXCEPT); ``SHOW TABLES [IN db] ['re']``
and ``SHOW DATABASES|SCHEMAS ['re']`` (results as ``<id>.txt``); ``CREATE TABLE ... WITH
(external_location = 's3://...', format = 'PARQUET') AS SELECT ...`` (parquet objects, a Glue
table, and the ``<id>-manifest.csv`` that awswrangler's CTAS approach reads) and ``DROP TABLE [IF
EXISTS]`` (the Glue table only, as Athena leaves the data). Anything else fails ``NOT_SUPPORTED``.

Tables: the table's ``StorageDescriptor.Location`` (all objects under it, recursively, except
those named ``_*`` or ``.*`` and empty folder markers) or, for a partitioned table, its
partitions' locations; parquet, CSV (LazySimpleSerDe or OpenCSVSerde, the crawler's
``skip.header.line.count``) and JSON lines (OpenX or Hive JsonSerDe). Columns are matched by name
whatever their case, cast to the catalog's types (a column missing from an object is NULL); the
partition keys are columns too. Conjuncts of a SELECT's WHERE that name only a table's partition
keys select the partitions read (evaluated with DuckDB on the partition values), so the others'
objects are neither read nor counted in DataScannedInBytes. Only the columns a query names are
decoded.

Logging names the query id, its state and timings only, never its SQL, rows or values (a failure
logs its error name, not the message, which can quote a value).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from moto.athena.models import AthenaBackend, WorkGroup
from moto.athena.responses import AthenaResponse
from moto.core.exceptions import JsonRESTError
from moto.glue.exceptions import EntityNotFoundException
from moto.glue.models import GlueBackend, glue_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import S3Backend, s3_backends
from moto.utilities.utils import get_partition
from sqlglot import exp

from devstack import athena_sql
from devstack.athena_sql import AthenaQueryError

logger = logging.getLogger(__name__)

MAX_CONCURRENT_QUERIES = 4
MAX_RESULTS_PER_PAGE = 1000
MAX_LISTED_EXECUTIONS = 50
ENGINE_VERSION = {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"}
DUCKDB_THREADS = 2
DUCKDB_MEMORY_LIMIT = "4GB"
CATALOG = "awsdatacatalog"
NO_OUTPUT_LOCATION = (
    "No output location provided. An output location is required either through the Workgroup result "
    "configuration setting or as an API input."
)

_PARQUET_FORMATS = (
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
)
_HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"

_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)
_LOCK = threading.RLock()  # the executions of every backend, and their client request tokens
_TOKENS: dict[str, str] = {}  # ClientRequestToken -> QueryExecutionId


def install() -> None:
    """Patch moto so that its Athena runs queries. Idempotent: it only (re)assigns class attributes.

    Call it in the process that runs moto's server, before the server handles an Athena request
    (moto dispatches each action to the AthenaResponse method of the same snake_case name).
    """
    AthenaResponse.start_query_execution = _start_query_execution
    AthenaResponse.get_query_execution = _get_query_execution
    AthenaResponse.batch_get_query_execution = _batch_get_query_execution
    AthenaResponse.get_query_results = _get_query_results
    AthenaResponse.stop_query_execution = _stop_query_execution
    AthenaResponse.list_query_executions = _list_query_executions
    AthenaResponse.get_work_group = _get_work_group
    # sqlglot warns about statements it parses loosely by quoting them, and a statement can hold
    # personal data: only its errors are logged
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


class _InvalidRequest(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("InvalidRequestException", message)


class _Cancelled(Exception):
    """StopQueryExecution was called: the query ends CANCELLED."""


# --- the execution -------------------------------------------------------------------------------


@dataclass
class _Result:
    columns: list[dict[str, Any]]  # ColumnInfo
    rows: list[list[str | None]]  # every row as VarCharValues, the header first when it has one
    header: bool = True


@dataclass
class LocalExecution:
    """One query execution: what StartQueryExecution asked for, and what became of it."""

    id: str
    query: str
    context: dict[str, Any]
    output_prefix: str  # s3://bucket/prefix/, where the result object goes
    workgroup: WorkGroup
    backend: AthenaBackend
    execution_parameters: list[str] | None = None
    result_configuration: dict[str, Any] = field(default_factory=dict)
    status: str = "QUEUED"
    statement_type: str = "DML"
    substatement_type: str = "SELECT"
    output_location: str | None = None
    manifest_location: str | None = None
    reason: str | None = None
    athena_error: dict[str, Any] | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    data_scanned: int = 0
    result: _Result | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    connection: duckdb.DuckDBPyConnection | None = None

    def as_dict(self) -> dict[str, Any]:
        now = time.time()
        end = self.completed or now
        status: dict[str, Any] = {"State": self.status, "SubmissionDateTime": self.submitted}
        if self.completed:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.athena_error:
            status["AthenaError"] = self.athena_error
        queued = (self.started or end) - self.submitted
        engine = end - self.started if self.started else 0.0
        statistics = {
            "EngineExecutionTimeInMillis": int(engine * 1000),
            "DataScannedInBytes": self.data_scanned,
            "TotalExecutionTimeInMillis": int((end - self.submitted) * 1000),
            "QueryQueueTimeInMillis": int(queued * 1000),
            "ServicePreProcessingTimeInMillis": 0,
            "QueryPlanningTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 0,
            "ResultReuseInformation": {"ReusedPreviousResult": False},
        }
        if self.manifest_location:
            statistics["DataManifestLocation"] = self.manifest_location
        result_configuration = dict(self.result_configuration)
        result_configuration["OutputLocation"] = self.output_location or self.output_prefix + f"{self.id}.csv"
        data = {
            "QueryExecutionId": self.id,
            "Query": self.query,
            "StatementType": self.statement_type,
            "SubstatementType": self.substatement_type,
            "ResultConfiguration": result_configuration,
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": self.context,
            "Status": status,
            "Statistics": statistics,
            "WorkGroup": self.workgroup.name,
            "EngineVersion": ENGINE_VERSION,
        }
        if self.execution_parameters:
            data["ExecutionParameters"] = self.execution_parameters
        return data

    # moto's own code (GetQueryRuntimeStatistics) reads these
    @property
    def start_time(self) -> float:
        return self.submitted

    @property
    def end_time(self) -> float:
        return self.completed or time.time()

    def advance(self) -> None:
        pass


# --- the API ----------------------------------------------------------------------------------


def _start_query_execution(self: AthenaResponse) -> str:
    backend = self.athena_backend
    query = self._get_param("QueryString") or ""
    if not query.strip():
        raise _InvalidRequest("QueryString must not be empty")
    if len(query) > 262144:
        raise _InvalidRequest("QueryString is longer than 262144 characters")
    workgroup = _workgroup(backend, self._get_param("WorkGroup") or "primary")
    if workgroup.state != "ENABLED":
        raise _InvalidRequest(f"WorkGroup {workgroup.name} is disabled.")
    token = self._get_param("ClientRequestToken")
    with _LOCK:
        if token and token in _TOKENS and _TOKENS[token] in backend.executions:
            return json.dumps({"QueryExecutionId": _TOKENS[token]})
    requested = dict(self._get_param("ResultConfiguration") or {})
    configured = (workgroup.configuration or {}).get("ResultConfiguration") or {}
    enforced = (workgroup.configuration or {}).get("EnforceWorkGroupConfiguration", False)
    location = configured.get("OutputLocation") if enforced else None
    location = location or requested.get("OutputLocation") or configured.get("OutputLocation")
    if not location:
        raise _InvalidRequest(NO_OUTPUT_LOCATION)
    if not location.startswith("s3://") or len(location) <= len("s3://"):
        raise _InvalidRequest(f"{location} is not a valid S3 path.")
    execution = LocalExecution(
        id=str(uuid.uuid4()),
        query=query,
        context=dict(self._get_param("QueryExecutionContext") or {}),
        output_prefix=location if location.endswith("/") else location + "/",
        workgroup=workgroup,
        backend=backend,
        execution_parameters=self._get_param("ExecutionParameters"),
        result_configuration={k: v for k, v in requested.items() if k != "OutputLocation"},
    )
    with _LOCK:
        backend.executions[execution.id] = execution
        if token:
            _TOKENS[token] = execution.id
    logger.info("athena query %s QUEUED (workgroup %s)", execution.id, workgroup.name)
    threading.Thread(target=_run, args=(execution,), name=f"athena-{execution.id[:8]}", daemon=True).start()
    return json.dumps({"QueryExecutionId": execution.id})


def _get_query_execution(self: AthenaResponse) -> str:
    execution = _execution(self.athena_backend, self._get_param("QueryExecutionId"))
    return json.dumps({"QueryExecution": execution.as_dict()})


def _batch_get_query_execution(self: AthenaResponse) -> str:
    found, missing = [], []
    for execution_id in self._get_param("QueryExecutionIds") or []:
        execution = self.athena_backend.executions.get(execution_id)
        if isinstance(execution, LocalExecution):
            found.append(execution.as_dict())
        else:
            missing.append(
                {"QueryExecutionId": execution_id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": "not found"}
            )
    return json.dumps({"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing})


def _get_query_results(self: AthenaResponse) -> str:
    execution = _execution(self.athena_backend, self._get_param("QueryExecutionId"))
    max_results = self._get_param("MaxResults")
    if max_results is not None and not 1 <= int(max_results) <= MAX_RESULTS_PER_PAGE:
        raise _InvalidRequest(f"MaxResults must be between 1 and {MAX_RESULTS_PER_PAGE}")
    if execution.status in ("QUEUED", "RUNNING"):
        raise _InvalidRequest(f"Query has not yet finished. Current state: {execution.status}")
    if execution.status == "FAILED":
        raise _InvalidRequest(execution.reason or "Query failed")
    if execution.status == "CANCELLED":
        raise _InvalidRequest("Query was cancelled")
    result = execution.result or _Result([], [])
    start = _page_offset(self._get_param("NextToken"), execution.id)
    end = start + int(max_results or MAX_RESULTS_PER_PAGE)
    rows = [{"Data": [{"VarCharValue": v} if v is not None else {} for v in row]} for row in result.rows[start:end]]
    response: dict[str, Any] = {
        "UpdateCount": 0,
        "ResultSet": {"Rows": rows, "ResultSetMetadata": {"ColumnInfo": result.columns}},
    }
    if end < len(result.rows):
        response["NextToken"] = base64.urlsafe_b64encode(f"{execution.id}:{end}".encode()).decode()
    return json.dumps(response)


def _page_offset(token: str | None, execution_id: str) -> int:
    if not token:
        return 0
    try:
        owner, _, offset = base64.urlsafe_b64decode(token.encode()).decode().rpartition(":")
        if owner == execution_id:
            return int(offset)
    except ValueError:
        pass
    raise _InvalidRequest("NextToken is not valid for this query")


def _stop_query_execution(self: AthenaResponse) -> str:
    execution = _execution(self.athena_backend, self._get_param("QueryExecutionId"))
    execution.cancel_requested.set()
    with _LOCK:
        connection = execution.connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.interrupt()
    logger.info("athena query %s: stop requested (state %s)", execution.id, execution.status)
    return json.dumps({})


def _list_query_executions(self: AthenaResponse) -> str:
    workgroup = _workgroup(self.athena_backend, self._get_param("WorkGroup") or "primary")
    limit = int(self._get_param("MaxResults") or MAX_LISTED_EXECUTIONS)
    if not 1 <= limit <= MAX_LISTED_EXECUTIONS:
        raise _InvalidRequest(f"MaxResults must be between 1 and {MAX_LISTED_EXECUTIONS}")
    with _LOCK:
        executions = [
            e
            for e in self.athena_backend.executions.values()
            if isinstance(e, LocalExecution) and e.workgroup.name == workgroup.name
        ]
    ids = [e.id for e in sorted(executions, key=lambda e: e.submitted, reverse=True)]
    start = _page_offset(self._get_param("NextToken"), workgroup.name)
    response: dict[str, Any] = {"QueryExecutionIds": ids[start : start + limit]}
    if start + limit < len(ids):
        response["NextToken"] = base64.urlsafe_b64encode(f"{workgroup.name}:{start + limit}".encode()).decode()
    return json.dumps(response)


def _get_work_group(self: AthenaResponse) -> str:
    workgroup = _workgroup(self.athena_backend, self._get_param("WorkGroup"))
    configuration = dict(workgroup.configuration)
    configuration.setdefault("ResultConfiguration", {})
    configuration["EngineVersion"] = ENGINE_VERSION
    data = {
        "Name": workgroup.name,
        "State": workgroup.state,
        "Configuration": configuration,
        "Description": workgroup.description or "",
        "CreationTime": getattr(workgroup, "creation_time", None) or _created(workgroup),
    }
    return json.dumps({"WorkGroup": data})


def _created(workgroup: WorkGroup) -> float:
    workgroup.creation_time = time.time()
    return workgroup.creation_time


def _workgroup(backend: AthenaBackend, name: str | None) -> WorkGroup:
    workgroup = backend.work_groups.get(name or "")
    if workgroup is None:
        raise _InvalidRequest(f"WorkGroup {name} is not found.")
    return workgroup


def _execution(backend: AthenaBackend, execution_id: str | None) -> LocalExecution:
    execution = backend.executions.get(execution_id or "")
    if not isinstance(execution, LocalExecution):
        raise _InvalidRequest(f"QueryExecution {execution_id} was not found")
    return execution


# --- running a query ------------------------------------------------------------------------------


def _run(execution: LocalExecution) -> None:
    """The query's thread. Whatever happens, the query ends SUCCEEDED, FAILED or CANCELLED."""
    with _SLOTS:
        try:
            if execution.cancel_requested.is_set():
                raise _Cancelled
            execution.started = time.time()
            execution.status = "RUNNING"
            logger.info(
                "athena query %s RUNNING after %.3f s queued", execution.id, execution.started - execution.submitted
            )
            _Query(execution).run()
            state = "SUCCEEDED"
        except _Cancelled:
            state = "CANCELLED"
            execution.reason = "Query cancelled by user"
        except AthenaQueryError as exc:
            state = "FAILED"
            execution.reason, execution.athena_error = exc.reason, exc.athena_error()
        except duckdb.InterruptException:
            state = "CANCELLED"
            execution.reason = "Query cancelled by user"
        except Exception as exc:  # a bug here: the query fails rather than hang RUNNING
            state = "FAILED"
            error = AthenaQueryError("GENERIC_INTERNAL_ERROR", f"{type(exc).__name__} in the local Athena engine")
            execution.reason, execution.athena_error = error.reason, error.athena_error()
            # the type only: an exception's message can quote a value
            logger.warning("athena query %s: internal error %s", execution.id, type(exc).__name__)
        finally:
            with _LOCK:
                if execution.connection is not None:
                    with contextlib.suppress(Exception):
                        execution.connection.close()
                    execution.connection = None
        if state != "SUCCEEDED" and execution.cancel_requested.is_set():
            state, execution.athena_error = "CANCELLED", None
            execution.reason = "Query cancelled by user"
        execution.completed = time.time()
        execution.status = state
    error_name = (execution.athena_error or {}).get("ErrorMessage", "").split(":", 1)[0]
    logger.info(
        "athena query %s %s%s in %.3f s (engine %.3f s, %d bytes scanned)",
        execution.id,
        state,
        f" ({error_name})" if state == "FAILED" else "",
        execution.completed - execution.submitted,
        execution.completed - (execution.started or execution.completed),
        execution.data_scanned,
    )


@dataclass
class _TableFiles:
    """The objects of one table reference, grouped by partition."""

    columns: dict[str, str]  # data column -> DuckDB type
    partition_keys: dict[str, str]  # partition key -> DuckDB type
    classification: str
    serde: dict[str, Any]
    parts: list[tuple[list[str], list[Any]]]  # (partition values, objects)
    table_parameters: dict[str, str] = field(default_factory=dict)  # the table's and its descriptor's


class _Query:
    def __init__(self, execution: LocalExecution):
        self.execution = execution
        backend = execution.backend
        self.glue: GlueBackend = glue_backends[backend.account_id][backend.region_name]
        self.s3: S3Backend = s3_backends[backend.account_id][get_partition(backend.region_name)]
        self.sql = execution.query
        self.database = (execution.context.get("Database") or "default").lower()
        catalog = (execution.context.get("Catalog") or CATALOG).lower()
        if catalog != CATALOG:
            raise AthenaQueryError("CATALOG_NOT_FOUND", f"Catalog '{catalog}' does not exist")
        self._relations = 0

    # -- the statement ------------------------------------------------------------------------

    def run(self) -> None:
        bucket, _ = _split_s3(self.execution.output_prefix)
        if not self._bucket_exists(bucket):
            raise AthenaQueryError("GENERIC_INTERNAL_ERROR", f"Unable to verify/create output bucket {bucket}")
        if re.match(r"(?is)\s*SHOW\s", self.sql):
            self._show()
            return
        statement = athena_sql.parse(self.sql)
        statement = athena_sql.bind_parameters(statement, self.execution.execution_parameters)
        kind = athena_sql.statement_kind(statement)
        if kind == "query":
            self._select(statement)
        elif kind == "show":
            self._show()
        elif kind == "ctas":
            self._ctas(statement)
        elif kind == "drop_table":
            self._drop_table(statement)
        else:
            self.execution.statement_type = "DDL" if kind.startswith(("CREATE", "ALTER", "DROP")) else "UTILITY"
            raise AthenaQueryError(
                "NOT_SUPPORTED",
                f"{kind} statements are not supported by the local Athena engine (it runs SELECT and WITH "
                "queries, SHOW TABLES, SHOW DATABASES, CREATE TABLE AS SELECT and DROP TABLE)",
            )

    def _select(self, statement: exp.Expression) -> None:
        connection = self._connect()
        bound = self._bind(statement, connection)
        sql = athena_sql.to_duckdb(bound)
        relation = self._execute(connection, sql, statement)
        columns = [
            athena_sql.column_info(name, type_) for name, type_ in zip(relation.columns, relation.types, strict=True)
        ]
        rows = self._fetch(relation, statement)
        self.execution.result = _Result(columns, [[c["Name"] for c in columns], *rows])
        self._write_csv()

    def _execute(self, connection: duckdb.DuckDBPyConnection, sql: str, statement: exp.Expression):
        self._check_cancelled()
        try:
            return connection.sql(sql)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            if self.execution.cancel_requested.is_set():
                raise _Cancelled from exc
            raise athena_sql.from_duckdb_error(exc, self.sql, statement) from exc

    def _fetch(self, relation, statement: exp.Expression) -> list[list[str | None]]:
        types = relation.types
        try:
            rows = relation.fetchall()
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            if self.execution.cancel_requested.is_set():
                raise _Cancelled from exc
            raise athena_sql.from_duckdb_error(exc, self.sql, statement) from exc
        self._check_cancelled()
        return [
            [athena_sql.format_value(value, type_) for value, type_ in zip(row, types, strict=True)] for row in rows
        ]

    def _check_cancelled(self) -> None:
        if self.execution.cancel_requested.is_set():
            raise _Cancelled

    def _connect(self) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect(
            config={
                "threads": DUCKDB_THREADS,
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                # tables are bound here; a name DuckDB cannot resolve must not find a Python variable
                "python_enable_replacements": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        # Trino's lambdas are x -> f(x): DuckDB 2 only takes them once asked to
        connection.execute("SET lambda_syntax = 'ENABLE_SINGLE_ARROW'")
        with contextlib.suppress(duckdb.Error):
            connection.execute("SET TimeZone = 'UTC'")
        with _LOCK:
            self.execution.connection = connection
        self._check_cancelled()
        return connection

    # -- binding the catalog's tables --------------------------------------------------------

    def _bind(self, statement: exp.Expression, connection: duckdb.DuckDBPyConnection) -> exp.Expression:
        """The statement with each catalog table replaced by a DuckDB view of its (pruned) data."""
        statement = statement.copy()
        ctes = athena_sql.cte_names(statement)
        names = athena_sql.referenced_names(statement)
        for table in list(statement.find_all(exp.Table)):
            if not table.name or (not table.db and table.name.lower() in ctes):
                continue
            view = self._bind_table(table, names, connection)
            alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name.lower(), quoted=True))
            table.replace(exp.Table(this=exp.to_identifier(view, quoted=True), alias=alias))
        # columns qualified with the database (db.table.column) are qualified by the table alone
        for column in statement.find_all(exp.Column):
            if column.args.get("db"):
                column.set("db", None)
                column.set("catalog", None)
        return statement

    def _table_input(self, table: exp.Table) -> tuple[str, str, Any]:
        catalog = table.catalog.lower()
        where = athena_sql.node_position(self.sql, table)
        if catalog and catalog != CATALOG:
            raise AthenaQueryError("CATALOG_NOT_FOUND", f"Catalog '{catalog}' does not exist", where)
        database_name = (table.db or self.database).lower()
        name = table.name.lower()
        database = self._database(database_name)
        if database is None:
            raise AthenaQueryError("SCHEMA_NOT_FOUND", f"Schema '{database_name}' does not exist", where)
        found = next((t for n, t in list(database.tables.items()) if n.lower() == name), None)
        if found is None:
            raise AthenaQueryError("TABLE_NOT_FOUND", f"Table '{CATALOG}.{database_name}.{name}' does not exist", where)
        return database_name, name, found

    def _database(self, name: str):
        databases = self.glue.databases
        return databases.get(name) or next((d for n, d in list(databases.items()) if n.lower() == name), None)

    def _bind_table(self, table: exp.Table, names: set[str] | None, connection: duckdb.DuckDBPyConnection) -> str:
        database_name, name, glue_table = self._table_input(table)
        definition = glue_table.as_dict()
        if definition.get("TableType") == "VIRTUAL_VIEW":
            raise AthenaQueryError(
                "NOT_SUPPORTED", f"Views are not supported by the local Athena engine: {database_name}.{name}",
                athena_sql.node_position(self.sql, table),
            )  # fmt: skip
        descriptor = definition.get("StorageDescriptor") or {}
        serde = descriptor.get("SerdeInfo") or {}
        columns = {c["Name"].lower(): athena_sql.hive_to_duckdb(c["Type"]) for c in descriptor.get("Columns") or []}
        keys = {
            k["Name"].lower(): athena_sql.hive_to_duckdb(k.get("Type") or "string")
            for k in definition.get("PartitionKeys") or []
        }
        classification = _classification(definition, descriptor)
        if keys:
            partitions = [
                (p.values, (p.partition_input.get("StorageDescriptor") or {}).get("Location"))
                for p in list(glue_table.partitions.values())
            ]
            partitions = self._prune(table, keys, partitions, connection)
            parts = [(values, self._objects(location)) for values, location in partitions if location]
        else:
            parts = [([], self._objects(descriptor.get("Location")))]
        wanted = {c for c in columns if names is None or c in names}
        parameters = {**(descriptor.get("Parameters") or {}), **(definition.get("Parameters") or {})}
        files = _TableFiles(columns, keys, classification, serde, parts, parameters)
        return self._register(files, wanted, connection, table)

    def _prune(
        self,
        table: exp.Table,
        keys: dict[str, str],
        partitions: list[tuple[list[str], str | None]],
        connection: duckdb.DuckDBPyConnection,
    ) -> list[tuple[list[str], str | None]]:
        """The partitions whose values satisfy the WHERE's conjuncts on the partition keys."""
        conjuncts = athena_sql.partition_conjuncts(table, keys)
        if not conjuncts or not partitions:
            return partitions
        condition = exp.and_(*conjuncts)
        columns = ", ".join(f'CAST(v{i} AS {type_}) AS "{key}"' for i, (key, type_) in enumerate(keys.items()))
        rows = pa.table(
            {
                "__partition": pa.array(range(len(partitions)), pa.int64()),
                **{
                    f"v{i}": pa.array(
                        [None if p[0][i] == _HIVE_DEFAULT_PARTITION else p[0][i] for p in partitions]
                        if all(len(p[0]) > i for p in partitions) else [None] * len(partitions),
                        pa.string(),
                    )
                    for i in range(len(keys))
                },
            }
        )  # fmt: skip
        relation = f"__partitions_{self._next()}"
        connection.register(relation, rows)
        try:
            where = athena_sql.to_duckdb(exp.select("*").where(condition), name_columns=False).split(" WHERE ", 1)[1]
            query = f'SELECT __partition FROM (SELECT __partition, {columns} FROM "{relation}") WHERE {where}'
            chosen = {row[0] for row in connection.execute(query).fetchall()}
        except duckdb.Error:
            # a condition DuckDB cannot evaluate on the values alone: read every partition, the
            # query's own WHERE still applies
            return partitions
        finally:
            connection.unregister(relation)
        return [partition for index, partition in enumerate(partitions) if index in chosen]

    def _objects(self, location: str | None) -> list[Any]:
        if not location:
            return []
        bucket_name, prefix = _split_s3(location)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        try:
            bucket = self.s3.get_bucket(bucket_name)
        except MissingBucket:
            return []
        keys = self.s3.list_objects(bucket, prefix, None, None, None)[0]
        objects = []
        for key in keys:
            relative = key.name[len(prefix) :]
            # folder markers, Hadoop/Spark markers (_SUCCESS) and hidden files are not data
            if key.size == 0 or relative.endswith("$folder$"):
                continue
            if any(part.startswith(("_", ".")) for part in relative.split("/")):
                continue
            objects.append(key)
        return objects

    def _next(self) -> int:
        self._relations += 1
        return self._relations

    def _register(
        self, files: _TableFiles, wanted: set[str], connection: duckdb.DuckDBPyConnection, table: exp.Table
    ) -> str:
        """Register each partition's data with DuckDB and a view of their union with the catalog's
        column types; returns the view's name."""
        view = f"__table_{self._next()}"
        selects = []
        for values, objects in files.parts:
            for data in self._read(files, objects, wanted, table):
                relation = f"{view}_{self._next()}"
                connection.register(relation, data)
                present = set(data.column_names)
                cast = "TRY_CAST" if files.classification == "csv" else "CAST"
                projections = [
                    f'{cast}("{column}" AS {type_}) AS "{column}"'
                    if column in present
                    else f'CAST(NULL AS {type_}) AS "{column}"'
                    for column, type_ in files.columns.items()
                    if column in wanted
                ]
                for (key, type_), value in zip(files.partition_keys.items(), values, strict=False):
                    literal = "NULL" if value == _HIVE_DEFAULT_PARTITION else "'" + value.replace("'", "''") + "'"
                    projections.append(f'TRY_CAST({literal} AS {type_}) AS "{key}"')
                if not projections:
                    projections = ["NULL AS __no_column"]
                selects.append(f'SELECT {", ".join(projections)} FROM "{relation}"')
        if not selects:
            # no object: an empty relation with the table's columns
            columns = [f'CAST(NULL AS {t}) AS "{c}"' for c, t in files.columns.items()]
            columns += [f'CAST(NULL AS {t}) AS "{k}"' for k, t in files.partition_keys.items()]
            selects = [f"SELECT {', '.join(columns) or 'NULL AS __no_column'} WHERE false"]
        try:
            connection.execute(f'CREATE TEMP VIEW "{view}" AS ' + " UNION ALL ".join(selects))
        except duckdb.Error as exc:
            raise AthenaQueryError(
                "HIVE_BAD_DATA",
                f"the objects of table {table.name} do not match its catalog columns: {type(exc).__name__}",
            ) from exc
        return view

    def _read(self, files: _TableFiles, objects: list[Any], wanted: set[str], table: exp.Table) -> Iterator[pa.Table]:
        """Each object's wanted columns as an Arrow table (names in lower case); objects of one
        schema are concatenated."""
        batches: dict[pa.Schema, list[pa.Table]] = {}
        for key in objects:
            self._check_cancelled()
            data = self._read_object(files, key, wanted, table)
            self.execution.data_scanned += key.size
            batches.setdefault(data.schema, []).append(data)
        for tables in batches.values():
            yield pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def _read_object(self, files: _TableFiles, key: Any, wanted: set[str], table: exp.Table) -> pa.Table:
        uri = f"s3://{key.bucket_name}/{key.name}"
        try:
            body = pa.BufferReader(key.value)
            if files.classification == "parquet":
                parquet = pq.ParquetFile(body)
                by_name = {name.lower(): name for name in parquet.schema_arrow.names}
                chosen = [by_name[c] for c in files.columns if c in wanted and c in by_name]
                if chosen:
                    data = parquet.read(columns=chosen, use_threads=False)
                else:
                    data = pa.table({"__rows": pa.nulls(parquet.metadata.num_rows)})
            elif files.classification == "csv":
                data = self._read_csv(files, body)
            else:
                data = pa_json.read_json(body)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise AthenaQueryError("HIVE_BAD_DATA", f"Error reading {uri}: {type(exc).__name__}") from exc
        return data.rename_columns([name.lower() for name in data.column_names])

    def _read_csv(self, files: _TableFiles, body: pa.BufferReader) -> pa.Table:
        parameters = {**(files.serde.get("Parameters") or {})}
        library = (files.serde.get("SerializationLibrary") or "").lower()
        delimiter = parameters.get("field.delim") or parameters.get("separatorChar") or ","
        skip = int(files.table_parameters.get("skip.header.line.count") or 0)
        names = list(files.columns)
        read_options = pa_csv.ReadOptions(column_names=names, skip_rows=skip, autogenerate_column_names=False)
        parse_options = pa_csv.ParseOptions(
            delimiter=delimiter,
            quote_char=parameters.get("quoteChar", '"') if "opencsv" in library else '"',
            escape_char=parameters.get("escapeChar", False) or False,
            invalid_row_handler=lambda row: "skip",
        )
        convert_options = pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            null_values=["", "\\N"],
        )
        return pa_csv.read_csv(
            body, read_options=read_options, parse_options=parse_options, convert_options=convert_options
        )

    # -- other statements ---------------------------------------------------------------------

    def _show(self) -> None:
        self.execution.statement_type = "DDL"
        text = self.sql.strip().rstrip(";").strip()
        tables = re.fullmatch(r"(?is)SHOW\s+TABLES(?:\s+(?:IN|FROM)\s+(\S+?))?(?:\s+(?:LIKE\s+)?'([^']*)')?", text)
        databases = re.fullmatch(r"(?is)SHOW\s+(?:DATABASES|SCHEMAS)(?:\s+(?:LIKE\s+)?'([^']*)')?", text)
        if tables:
            self.execution.substatement_type = "SHOW_TABLES"
            database_name = (tables[1] or self.database).strip('`"').lower()
            database = self._database(database_name)
            if database is None:
                raise AthenaQueryError("SCHEMA_NOT_FOUND", f"Schema '{database_name}' does not exist")
            names, pattern, column = sorted(database.tables), tables[2], "tab_name"
        elif databases:
            self.execution.substatement_type = "SHOW_DATABASES"
            names, pattern, column = sorted(self.glue.databases), databases[1], "database_name"
        else:
            raise AthenaQueryError("NOT_SUPPORTED", "only SHOW TABLES and SHOW DATABASES are supported locally")
        if pattern:
            regex = re.compile(pattern.replace("*", ".*"), re.IGNORECASE)
            names = [name for name in names if regex.fullmatch(name)]
        info = {**athena_sql.column_info(column, _VARCHAR), "Type": "string", "CaseSensitive": False}
        self.execution.result = _Result([info], [[name] for name in names], header=False)
        location = self.execution.output_prefix + f"{self.execution.id}.txt"
        self.execution.output_location = location
        self._put(location, "".join(f"{name}\n" for name in names).encode())

    def _ctas(self, statement: exp.Create) -> None:
        self.execution.statement_type = "DDL"
        self.execution.substatement_type = "CREATE_TABLE_AS_SELECT"
        target = statement.this if isinstance(statement.this, exp.Table) else statement.this.this
        database_name = (target.db or self.database).lower()
        name = target.name.lower()
        where = athena_sql.node_position(self.sql, target)
        if self._database(database_name) is None:
            raise AthenaQueryError("SCHEMA_NOT_FOUND", f"Schema '{database_name}' does not exist", where)
        properties = {}
        for prop in (statement.args.get("properties") or exp.Properties(expressions=[])).expressions:
            if isinstance(prop, exp.FileFormatProperty):
                properties["format"] = prop.name
            elif isinstance(prop, exp.PartitionedByProperty):
                properties["partitioned_by"] = prop.sql()
            elif isinstance(prop, exp.Property):
                properties[prop.name.lower()] = prop.args["value"].name if prop.args.get("value") else ""
        if "partitioned_by" in properties or "bucketed_by" in properties:
            raise AthenaQueryError(
                "NOT_SUPPORTED", "partitioned_by and bucketed_by are not supported by the local CTAS"
            )
        if properties.get("format", "PARQUET").upper() != "PARQUET":
            raise AthenaQueryError("NOT_SUPPORTED", "the local CTAS writes PARQUET only")
        if statement.args.get("exists") and self._database(database_name).tables.get(name) is not None:
            self.execution.result = _Result([], [], header=False)
            return
        if self._database(database_name).tables.get(name) is not None:
            raise AthenaQueryError(
                "TABLE_ALREADY_EXISTS", f"Table '{CATALOG}.{database_name}.{name}' already exists", where
            )
        location = properties.get("external_location") or self.execution.output_prefix + f"tables/{self.execution.id}"
        location = location if location.endswith("/") else location + "/"
        bucket_name, prefix = _split_s3(location)
        if not self._bucket_exists(bucket_name):
            raise AthenaQueryError("HIVE_PATH_ALREADY_EXISTS", f"Bucket of {location} does not exist")
        if self._objects(location):
            raise AthenaQueryError(
                "HIVE_PATH_ALREADY_EXISTS",
                f"Target directory for table '{database_name}.{name}' already exists: {location}",
            )
        connection = self._connect()
        query = statement.expression
        bound = self._bind(query, connection)
        relation = self._execute(connection, athena_sql.to_duckdb(bound), query)
        casts = ", ".join(
            f'CAST("{column}" AS BIGINT) AS "{column}"' if str(type_.id).lower() in ("hugeint", "uhugeint", "ubigint")
            else f'CAST("{column}" AS TIMESTAMP) AS "{column}"' if str(type_.id).lower() == "timestamp with time zone"
            else f'"{column}"'
            for column, type_ in zip(relation.columns, relation.types, strict=True)
        )  # fmt: skip
        relation = self._execute(connection, f"SELECT {casts} FROM ({athena_sql.to_duckdb(bound)})", query)
        columns = [
            {"Name": c.lower(), "Type": athena_sql.duckdb_to_hive(t)}
            for c, t in zip(relation.columns, relation.types, strict=True)
        ]
        try:
            data = relation.fetch_arrow_table()
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            raise athena_sql.from_duckdb_error(exc, self.sql, query) from exc
        self._check_cancelled()
        buffer = io.BytesIO()
        pq.write_table(data.rename_columns([c["Name"] for c in columns]), buffer, compression="snappy")
        data_file = f"{location}{self.execution.id}_00000"
        self._put(data_file, buffer.getvalue())
        parameters = {"classification": "parquet", "has_encrypted_data": "false", "parquet.compression": "SNAPPY"}
        input_format, output_format, serde = _PARQUET_FORMATS
        table_input = {
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "PartitionKeys": [],
            "StorageDescriptor": {
                "Columns": columns,
                "Location": location.rstrip("/"),
                "InputFormat": input_format,
                "OutputFormat": output_format,
                "Compressed": False,
                "NumberOfBuckets": 0,
                "SerdeInfo": {"SerializationLibrary": serde, "Parameters": {"serialization.format": "1"}},
                "Parameters": {},
            },
        }
        self.glue.create_table(database_name, name, table_input)
        manifest = self.execution.output_prefix + f"{self.execution.id}-manifest.csv"
        self._put(manifest, f"{data_file}\n".encode())
        info = athena_sql.column_info("rows", _BIGINT)
        self._put(
            self.execution.output_prefix + f"{self.execution.id}.metadata", json.dumps({"ColumnInfo": [info]}).encode()
        )
        self.execution.manifest_location = manifest
        self.execution.output_location = self.execution.output_prefix + f"{self.execution.id}"
        self.execution.result = _Result([info], [["rows"], [str(data.num_rows)]])

    def _drop_table(self, statement: exp.Drop) -> None:
        self.execution.statement_type = "DDL"
        self.execution.substatement_type = "DROP_TABLE"
        target = statement.this
        database_name = (target.db or self.database).lower()
        name = target.name.lower()
        database = self._database(database_name)
        if database is None or name not in database.tables:
            if statement.args.get("exists"):
                self.execution.result = _Result([], [], header=False)
                return
            raise AthenaQueryError("TABLE_NOT_FOUND", f"Table '{CATALOG}.{database_name}.{name}' does not exist",
                                   athena_sql.node_position(self.sql, target))  # fmt: skip
        try:
            self.glue.delete_table(database.name, name)
        except EntityNotFoundException:
            pass
        self.execution.result = _Result([], [], header=False)
        self.execution.output_location = self.execution.output_prefix + f"{self.execution.id}.txt"
        self._put(self.execution.output_location, b"")

    # -- S3 --------------------------------------------------------------------------------

    def _bucket_exists(self, bucket_name: str) -> bool:
        try:
            self.s3.get_bucket(bucket_name)
        except MissingBucket:
            return False
        return True

    def _put(self, uri: str, body: bytes) -> None:
        bucket, key = _split_s3(uri)
        self.s3.put_object(bucket_name=bucket, key_name=key, value=body)

    def _write_csv(self) -> None:
        result = self.execution.result
        assert result is not None
        location = self.execution.output_prefix + f"{self.execution.id}.csv"
        self.execution.output_location = location
        self._put(location, "".join(athena_sql.csv_line(row) for row in result.rows).encode())
        self._put(location + ".metadata", json.dumps({"ColumnInfo": result.columns}).encode())


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _classification(definition: dict[str, Any], descriptor: dict[str, Any]) -> str:
    """parquet, csv or json, from the table's SerDe and InputFormat as a crawler or DDL sets them."""
    serde = ((descriptor.get("SerdeInfo") or {}).get("SerializationLibrary") or "").lower()
    input_format = (descriptor.get("InputFormat") or "").lower()
    declared = ((definition.get("Parameters") or {}).get("classification") or "").lower()
    if "parquet" in serde or "parquet" in input_format or declared == "parquet":
        return "parquet"
    if "json" in serde or declared == "json":
        return "json"
    if "csv" in serde or "lazysimple" in serde or declared == "csv" or "textinputformat" in input_format:
        return "csv"
    raise AthenaQueryError(
        "NOT_SUPPORTED", f"table format {serde or input_format or declared or 'unknown'} is not supported locally"
    )


_VARCHAR = duckdb.sqltype("VARCHAR")
_BIGINT = duckdb.sqltype("BIGINT")
