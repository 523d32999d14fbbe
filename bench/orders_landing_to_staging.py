"""orders_landing_to_staging: the landing-to-staging Glue script's throughput and peak memory,
against a plain pyarrow copy of the same landing files.

The script deduplicates at-least-once deliveries (latest copy of each order wins) and explodes
products into lines in two streaming passes; the question is what that costs over just moving the
bytes, and whether its memory stays bounded as batches grow (Glue G.1X workers have 16 GB, but the
script promises memory that does not grow with the batch). Both sides run as fresh child processes
against the local stack's S3 (moto, in its own process), alternately (A B A B ...):

- baseline  read every landing object of the batch's hours with ``pyarrow.dataset`` and write the
  same rows as one parquet dataset to the staging bucket (no dedupe, no explode);
- candidate ``orders_landing_to_staging.py`` run as the local Glue emulation runs it
  (``glue_launcher.py``, the same arguments and environment).

Wall time is from spawn to exit; peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). The
batch is written once with ``write_orders_batch`` (5% re-delivered orders) at BENCH_ORDERS
(``--orders``, default 1,000,000) and at half that, each in hour partitions of its own.

Targets: throughput candidate/baseline >= 0.7 (orders of the batch per second, both sides);
peak RSS < 1.5 GB at both sizes, and it should not grow with the batch (the ratio full/half is
printed: about 1.0 means bounded, 2.0 means it grows linearly).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta

from bench.common import (
    ORDERS_SCRIPTS,
    PYTHON,
    STAGING_BUCKET,
    OrdersBatch,
    Session,
    Verdict,
    fmt_samples,
    glue_command,
    glue_environment,
    interleave,
    median,
    progress,
    result_block,
    run_child,
)

NAME = "orders_landing_to_staging"
DEFAULT_REPEAT = 5
TARGET_RATIO = 0.7
TARGET_RSS_MB = 1536.0
SCRIPT = ORDERS_SCRIPTS / "orders_landing_to_staging.py"
BASELINE_PREFIX = "bench-baseline/orders/"


def _baseline(env: dict[str, str], batch: OrdersBatch) -> dict:
    run = run_child([PYTHON, "-m", __name__, json.dumps(batch.landing_arguments())], env=env)
    summary = run.last_json()
    return {"seconds": run.seconds, "rss_mb": run.peak_rss_mb, "rows": summary["rows"]}


def _candidate(env: dict[str, str], batch: OrdersBatch, job_run_id: str) -> dict:
    run = run_child(glue_command(SCRIPT, job_run_id, batch.landing_arguments()), env=env)
    summary = run.last_json()
    if summary["lines_written"] != batch.order_lines:
        raise RuntimeError(f"the script wrote {summary['lines_written']} lines, expected {batch.order_lines}")
    return {"seconds": run.seconds, "rss_mb": run.peak_rss_mb, "lines": summary["lines_written"]}


def _measure(session: Session, batch: OrdersBatch, repeat: int) -> dict:
    env = glue_environment(session.stack().endpoint_url)

    def baseline(index: int) -> dict:
        return _baseline(env, batch)

    def candidate(index: int) -> dict:
        return _candidate(env, batch, f"bench-{index}")

    a, b = interleave(
        baseline,
        candidate,
        repeat,
        label=f"{batch.orders:,} orders, pair",
        describe=lambda x, y: (
            f"plain copy {x['seconds']:.1f} s / {x['rss_mb']:.0f} MB, "
            f"script {y['seconds']:.1f} s / {y['rss_mb']:.0f} MB"
        ),
    )
    batch.staged = True  # the candidate's last run left the batch's staging partition in place
    return {"batch": batch, "baseline": a, "candidate": b}


def _throughput_block(result: dict, repeat: int) -> Verdict:
    batch: OrdersBatch = result["batch"]
    a_seconds = [s["seconds"] for s in result["baseline"]]
    b_seconds = [s["seconds"] for s in result["candidate"]]
    a_rate, b_rate = batch.orders / median(a_seconds), batch.orders / median(b_seconds)
    rows = result["baseline"][0]["rows"]
    ratio = b_rate / a_rate
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    pairs = [a / b for a, b in zip(a_seconds, b_seconds, strict=True)]
    return result_block(
        NAME,
        f"throughput, {batch.orders:,} orders",
        measured=(
            f"orders of the batch per second (wall, spawn to exit), {repeat} interleaved pairs, medians; "
            f"{rows:,} landing rows in, {batch.order_lines:,} staging lines out"
        ),
        baseline=("pyarrow dataset copy", f"{a_rate:,.0f} orders/s ({_runs(a_seconds)})"),
        candidate=("Glue script", f"{b_rate:,.0f} orders/s ({_runs(b_seconds)})"),
        difference=f"the script takes {median(b_seconds) - median(a_seconds):+.1f} s more than the plain copy",
        ratio=f"throughput script / plain copy = {ratio:.2f} (target ≥ {TARGET_RATIO}): {verdict}",
        details=[f"pairs      script / plain copy, pair by pair: {', '.join(f'{p:.2f}' for p in pairs)}"],
        target=f"ratio >= {TARGET_RATIO}",
        passed=ratio >= TARGET_RATIO,
    )


def _runs(seconds: list[float]) -> str:
    return f"{median(seconds):.1f} s; runs {fmt_samples(seconds, digits=1)}"


def _memory_block(half: dict, full: dict) -> Verdict:
    def peak(result: dict, side: str) -> float:
        return median([s["rss_mb"] for s in result[side]])

    half_rss, full_rss = peak(half, "candidate"), peak(full, "candidate")
    n_half, n_full = half["batch"].orders, full["batch"].orders
    return result_block(
        NAME,
        f"peak memory at {n_half:,} and {n_full:,} orders",
        measured="the child's own peak RSS (wait4 ru_maxrss), median over the runs of each size",
        baseline=(f"script, {n_half:,} orders", f"{half_rss:,.0f} MB (plain copy: {peak(half, 'baseline'):,.0f} MB)"),
        candidate=(f"script, {n_full:,} orders", f"{full_rss:,.0f} MB (plain copy: {peak(full, 'baseline'):,.0f} MB)"),
        difference=f"{full_rss - half_rss:+,.0f} MB for {n_full - n_half:,} more orders",
        ratio=f"peak RSS at full / half size = {full_rss / half_rss:.2f} (1.0: bounded; 2.0: grows with the batch)",
        target=f"peak RSS < {TARGET_RSS_MB / 1024:.1f} GB at both sizes",
        passed=max(half_rss, full_rss) < TARGET_RSS_MB,
    )


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT)
    full_batch = session.orders_batch(session.orders)
    half_batch = session.orders_batch(session.orders // 2)
    warmup, env = session.warmup_batch(), glue_environment(session.stack().endpoint_url)
    progress(f"warm-up: both sides once on {warmup.orders:,} orders (untimed)")
    _baseline(env, warmup), _candidate(env, warmup, "bench-warmup")
    full = _measure(session, full_batch, repeat)
    half = _measure(session, half_batch, repeat)
    return [_throughput_block(full, repeat), _throughput_block(half, repeat), _memory_block(half, full)]


# -- the baseline, run as a child process: python -m bench.orders_landing_to_staging '<arguments>' --------


def plain_copy(arguments: dict[str, str]) -> dict:
    """Read the batch's landing hours with pyarrow.dataset and write the rows back as one dataset."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], region=os.environ["AWS_DEFAULT_REGION"])
    start = datetime.fromisoformat(arguments["--started_at"].replace("Z", "+00:00")).astimezone(UTC)
    end = datetime.fromisoformat(arguments["--completed_at"].replace("Z", "+00:00")).astimezone(UTC)
    hour, paths = start.replace(minute=0, second=0, microsecond=0), []
    while hour <= end:
        prefix = f"{arguments['--landing_bucket']}/orders/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}"
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        paths += [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
        hour += timedelta(hours=1)
    dataset = ds.dataset(sorted(paths), filesystem=fs, format="parquet")
    target = f"{STAGING_BUCKET}/{BASELINE_PREFIX}run_id={arguments['--batch_id']}"
    # No file_visitor: a Python callback from pyarrow's writer threads makes the process abort
    # at exit now and then ("terminate called without an active exception"). Count the footers.
    ds.write_dataset(
        dataset,
        target,
        filesystem=fs,
        format="parquet",
        existing_data_behavior="delete_matching",
        max_rows_per_group=131_072,
        max_rows_per_file=1_000_000,
    )
    rows = ds.dataset(target, filesystem=fs, format="parquet").count_rows()
    return {"objects_read": len(paths), "rows": rows}


if __name__ == "__main__":
    print(json.dumps(plain_copy(json.loads(sys.argv[1]))), flush=True)
