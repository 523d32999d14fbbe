"""A user's own Glue script: writes a small parquet file with pyarrow and prints a line."""

import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs


def resolved_options(argv, names):
    values = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg[2:] in names and i + 1 < len(argv):
            values[arg[2:]] = argv[i + 1]
    return values


def main():
    args = resolved_options(sys.argv, {"JOB_RUN_ID", "bucket", "key", "rows"})
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    scheme, _, address = endpoint.partition("://")
    s3 = fs.S3FileSystem(endpoint_override=address or None, scheme=scheme or "https",
                         region=os.environ.get("AWS_DEFAULT_REGION"))
    rows = int(args["rows"])
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"row {i}" for i in range(rows)]})
    pq.write_table(table, f"{args['bucket']}/{args['key']}", filesystem=s3)
    print(f"wrote {rows} rows to s3://{args['bucket']}/{args['key']} in run {args['JOB_RUN_ID']}")


if __name__ == "__main__":
    main()
