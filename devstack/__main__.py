"""The local stack's command line: ``python -m devstack COMMAND`` (the Makefile's targets call it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the AWS emulator and the warehouse in the foreground")
    up.add_argument("--state-dir", type=Path, help="where data and stack.env live (default .local)")
    up.add_argument("--aws-host", default="127.0.0.1", help="address the emulator binds (0.0.0.0 in compose)")
    up.add_argument("--aws-port", type=int, default=5555, help="emulator port (0: any free port)")
    up.add_argument("--pg-port", type=int, default=5433, help="embedded PostgreSQL port (0: any free port)")
    up.add_argument("--warehouse-url", help="use this PostgreSQL for warehouse_db instead of the embedded one")
    up.add_argument("--totesys-url", help="use this PostgreSQL for totesys_db instead of the embedded one")
    up.add_argument("--supplychain-url", help="use this PostgreSQL for supplychain_db instead of the embedded one")
    up.add_argument("--airflow-url", help="Airflow metadata database (default: the stack's PostgreSQL)")
    up.add_argument("--no-airflow-db", action="store_true", help="do not migrate an Airflow metadata database")
    up.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")

    airflow_cli = commands.add_parser(
        "airflow", help="the local stack plus Airflow (API server and UI, scheduler, DAG processor, triggerer)"
    )
    airflow_cli.add_argument("--port", type=int, default=8080, help="UI and API port on 127.0.0.1 (0: any free port)")
    airflow_cli.add_argument("--state-dir", type=Path, help="where data, stack.env and logs live (default .local)")
    airflow_cli.add_argument("--aws-port", type=int, default=5555, help="emulator port (0: any free port)")
    airflow_cli.add_argument("--pg-port", type=int, default=5433, help="embedded PostgreSQL port (0: any free port)")
    airflow_cli.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process dies")

    bundle = commands.add_parser("bundle", help="build the MWAA deployment in dist/mwaa")
    bundle.add_argument("--out", type=Path, default=Path("dist/mwaa"))

    demo = commands.add_parser("demo", help="run a pipeline end to end on the local stack and print a report")
    demo.add_argument("--pipeline", default="orders")
    demo.add_argument("--orders", type=int, default=2000, help="size of the sample batch")
    demo.add_argument("--seed", type=int, default=7)

    psql = commands.add_parser("psql", help="psql on a database of the running stack, as its own role")
    psql.add_argument("database", choices=("totesys", "supplychain", "warehouse"))
    psql.add_argument("psql_args", nargs=argparse.REMAINDER, help="passed on to psql (e.g. -c 'SELECT 1')")
    psql.add_argument("--state-dir", type=Path, help="the running stack's state folder (default .local)")

    args = parser.parse_args(argv)
    if args.command == "up":
        from devstack.stack import DEFAULT_STATE_DIR, StackOptions, run_foreground

        options = StackOptions(
            state_dir=(args.state_dir or DEFAULT_STATE_DIR).resolve(),
            aws_host=args.aws_host,
            aws_port=args.aws_port,
            pg_port=args.pg_port,
            warehouse_url=args.warehouse_url,
            totesys_url=args.totesys_url,
            supplychain_url=args.supplychain_url,
            airflow_url=args.airflow_url,
            migrate_airflow_db=not args.no_airflow_db,
        )
        run_foreground(options, exit_with_parent=args.exit_with_parent)
    elif args.command == "airflow":
        from devstack import airflow
        from devstack.stack import DEFAULT_STATE_DIR

        return airflow.run_foreground(
            airflow.AirflowOptions(
                state_dir=(args.state_dir or DEFAULT_STATE_DIR).resolve(),
                port=args.port,
                aws_port=args.aws_port,
                pg_port=args.pg_port,
                exit_with_parent=args.exit_with_parent,
            )
        )
    elif args.command == "demo":
        from devstack.demo import main as demo_main

        return demo_main(args.pipeline, args.orders, args.seed)
    elif args.command == "psql":
        return _psql(args.database, args.psql_args, args.state_dir)
    elif args.command == "bundle":
        from devstack.bundle import build

        out = build(args.out.resolve())
        print(f"MWAA bundle in {out}: dags/ (with include/), plugins.zip, requirements.txt")
    return 0


def _psql(database: str, psql_args: list[str], state_dir: Path | None) -> int:
    """Run pgserver's psql with the connection that stack.env gives the pipelines: the totesys
    source as ``totesys_app``, the warehouse as ``etl_warehouse`` (what "someone else" changing
    the source looks like, or a look at the loaded tables)."""
    import json
    import os
    import shutil

    from devstack.stack import DEFAULT_STATE_DIR, read_env_file

    env_file = (state_dir or DEFAULT_STATE_DIR).resolve() / "stack.env"
    if not env_file.exists():
        print(f"no running stack: {env_file} does not exist (start one with `make stack`)", file=sys.stderr)
        return 2
    conn = json.loads(read_env_file(env_file)[f"AIRFLOW_CONN_{database.upper()}_DB"])
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        binary = str(POSTGRES_BIN_PATH / "psql")
    except ImportError:
        binary = shutil.which("psql") or "psql"
    argv = [binary, "-h", conn["host"], "-p", str(conn["port"]), "-U", conn["login"], "-d", conn["schema"]]
    # The password goes through the environment, never the command line (ps would show it).
    os.execvpe(binary, argv + psql_args, {**os.environ, "PGPASSWORD": conn["password"]})


if __name__ == "__main__":
    sys.exit(main())
