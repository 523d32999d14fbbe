"""``python -m bench [names...] [--orders N] [--dag-orders N] [--runtime-orders N]
[--totesys-sales-orders N] [--ecommerce-transactions N] [--shipments N] [--supplychain-shipments N]
[--repeat N]``: run benchmarks, each printing a ratio against its baseline; ``--list`` names them.
``make bench`` runs them all.

Everything a benchmark starts (the local stack, servers, child processes) listens on 127.0.0.1 on
free ports and is stopped when the command ends, also on an error, Ctrl-C or SIGTERM. The exit
code is 1 when a benchmark failed to run, 0 otherwise (a MISS is a finding, not an error).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback

from bench.common import (
    DEFAULT_DAG_ORDERS,
    DEFAULT_ECOMMERCE_TRANSACTIONS,
    DEFAULT_ORDERS,
    DEFAULT_RUNTIME_ORDERS,
    DEFAULT_SHIPMENTS,
    DEFAULT_SUPPLYCHAIN_SHIPMENTS,
    DEFAULT_TOTESYS_SALES_ORDERS,
    Session,
    Verdict,
)

# name -> module, in the order ``python -m bench`` runs them (cheapest first).
BENCHMARKS = {
    "dag_parse": "bench.dag_parse",
    "glue_overhead": "bench.glue_overhead",
    "glue_spark_overhead": "bench.glue_spark_overhead",
    "orders_landing_to_staging": "bench.orders_landing_to_staging",
    "warehouse_staging_load": "bench.warehouse_staging_load",
    "totesys_ingest": "bench.totesys_ingest",
    "ecommerce_upsert": "bench.ecommerce_upsert",
    "athena_query": "bench.athena_query",
    "shipping_json_to_parquet": "bench.shipping_json_to_parquet",
    "supplychain_silver_facts": "bench.supplychain_silver_facts",
    "orders_dag": "bench.orders_dag",
    "orders_runtime": "bench.orders_runtime",
    "worker_memory": "bench.worker_memory",
    "totesys_cycle": "bench.totesys_cycle",
    "supplychain_dag": "bench.supplychain_dag",
}


# The sizes a command's benchmarks work on: option (and BENCH_<OPTION>), default, minimum, what it sizes.
SIZE_OPTIONS = (
    ("orders", DEFAULT_ORDERS, 2, "big-batch size in orders"),
    ("dag_orders", DEFAULT_DAG_ORDERS, 2, "orders_dag's batch size in orders"),
    ("runtime_orders", DEFAULT_RUNTIME_ORDERS, 2, "orders_runtime's batch size in orders"),
    ("totesys_sales_orders", DEFAULT_TOTESYS_SALES_ORDERS, 1, "sales orders in the totesys source"),
    ("ecommerce_transactions", DEFAULT_ECOMMERCE_TRANSACTIONS, 1, "e-commerce transactions in the upsert batch"),
    ("shipments", DEFAULT_SHIPMENTS, 1, "shipping records in the shipping benchmarks' batch"),
    ("supplychain_shipments", DEFAULT_SUPPLYCHAIN_SHIPMENTS, 5, "supply-chain shipments (purchase orders: a fifth)"),
)


def _summary_line(name: str) -> str:
    """The first paragraph of the benchmark's docstring, without its leading "name: "."""
    module = importlib.import_module(BENCHMARKS[name])
    first_paragraph = (module.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first_paragraph.split()).removeprefix(f"{name}: ")


def _size_default(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").replace("_", "").replace(",", "")
    return int(value) if value else default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks, each printing a ratio against a baseline run in the same command.",
    )
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    for option, default, minimum, what in SIZE_OPTIONS:
        variable = f"BENCH_{option.upper()}"
        parser.add_argument(
            f"--{option.replace('_', '-')}",
            type=int,
            default=_size_default(variable, default),
            help=f"{what} (default: ${variable} or {default:,}; at least {minimum})",
        )
    parser.add_argument("--repeat", type=int, help="samples per side (default: each benchmark's own)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name in BENCHMARKS:
            print(f"{name:<28}{_summary_line(name)}")
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for option, _, minimum, _ in SIZE_OPTIONS:
        if getattr(args, option) < minimum:
            parser.error(f"--{option.replace('_', '-')} must be at least {minimum}")
    names = args.names or list(BENCHMARKS)

    # SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    session = Session(
        orders=args.orders,
        dag_orders=args.dag_orders,
        runtime_orders=args.runtime_orders,
        repeat=args.repeat,
        totesys_sales_orders=args.totesys_sales_orders,
        ecommerce_transactions=args.ecommerce_transactions,
        shipments=args.shipments,
        supplychain_shipments=args.supplychain_shipments,
    )
    verdicts: list[Verdict] = []
    errors: list[str] = []
    started = time.monotonic()
    print(
        f"benchmarks: {', '.join(names)}; big batch {args.orders:,} orders; orders_dag {args.dag_orders:,} and "
        f"orders_runtime {args.runtime_orders:,} orders; totesys source "
        f"{args.totesys_sales_orders:,} sales orders; e-commerce batch {args.ecommerce_transactions:,} "
        f"transactions; shipping batch {args.shipments:,} records; supply-chain drop {args.supplychain_shipments:,} "
        f"shipments and {session.supplychain_purchase_orders:,} purchase orders; work folder {session.workdir}"
    )
    try:
        for name in names:
            print(f"\n=== {name}: {_summary_line(name)}", flush=True)
            module = importlib.import_module(BENCHMARKS[name])
            try:
                verdicts += module.run(session)
            except Exception:
                traceback.print_exc()
                errors.append(name)
                print(f"=== {name}: ERROR (see the traceback above)", flush=True)
    finally:
        session.close()

    print(f"\n=== summary ({time.monotonic() - started:.0f} s)")
    for verdict in verdicts:
        outcome = {True: "PASS", False: "MISS", None: "REPORT"}[verdict.passed]
        print(f"  {outcome:<7}{verdict.benchmark:<28}{verdict.title}")
    for name in errors:
        print(f"  {'ERROR':<7}{name}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
