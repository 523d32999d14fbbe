"""A Glue script that fails the way a real job does: an exception with a reason."""

import sys

print("about to fail", flush=True)
raise RuntimeError(f"cannot process batch {sys.argv[sys.argv.index('--batch_id') + 1]}: source table is empty")
