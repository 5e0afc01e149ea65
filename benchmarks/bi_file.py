"""Speed and size of the BI file (the marts copied to a DuckDB file and swapped in), with a reader.

Fills a DuckDB warehouse (or the PostgreSQL one ``--warehouse-url`` names) with marts of customer-360
width for ``--customers`` customers, then writes the BI file twice while another process reads it in a
loop with read-only connections. Prints the export's wall time, file size, peak memory of this process,
and the reader's successful reads and errors (there must be none).

    .venv/bin/python benchmarks/bi_file.py [--customers 1000000] [--warehouse-url postgresql+psycopg://...]

Run it under ``flock /tmp/crm-heavy.lock`` at a million customers on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crm_pipelines.bi_file import export_marts_file
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse

# Built in SQL so that filling a million rows takes seconds, not the benchmark's time.
WIDE_COLUMNS = ", ".join(
    [
        "'C' || lpad(i::varchar, 9, '0') AS customer_id",
        *(f"'value ' || (i % {97 + k})::varchar AS text_{k}" for k in range(12)),
        *(f"(i * {k + 1}) % 1000 AS count_{k}" for k in range(10)),
        *(f"((i * {k + 3}) % 10007) / 7.0 AS amount_{k}" for k in range(10)),
        *(f"TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds((i * {k + 7}) % 150000000) AS at_{k}" for k in range(5)),
    ]
)
READER = """
import json, os, sys, time, duckdb
path, stop = sys.argv[1:3]
reads, errors = 0, []
while not os.path.exists(stop):
    try:
        with duckdb.connect(path, read_only=True) as conn:
            conn.execute("SELECT count(*), sum(amount_0) FROM customer_360").fetchone()
        reads += 1
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    time.sleep(0.02)
print(json.dumps({"reads": reads, "errors": errors[:3], "error_count": len(errors)}))
"""


def fill(wh: Warehouse, customers: int) -> None:
    import duckdb

    with duckdb.connect() as duck:
        for table, rows in (("customer_360", customers), ("customer_segments", customers), ("crm_kpis", 365)):
            data = duck.execute(f"SELECT {WIDE_COLUMNS} FROM range({rows}) AS r(i)").to_arrow_table()
            wh.publish(data, MARTS, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--warehouse-url", default=None, help="default: a DuckDB file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        wh = Warehouse(args.warehouse_url or f"duckdb:///{root / 'warehouse.duckdb'}")
        started = time.perf_counter()
        fill(wh, args.customers)
        print(f"filled {wh.dialect} marts for {args.customers:,} customers in {time.perf_counter() - started:.1f} s")
        target = root / "bi.duckdb"
        export_marts_file(wh, target)  # yesterday's file, which the reader holds when the export starts
        stop = root / "stop"
        reader = subprocess.Popen([sys.executable, "-c", READER, str(target), str(stop)], stdout=subprocess.PIPE)
        time.sleep(1.0)
        try:
            export = export_marts_file(wh, target)
        finally:
            time.sleep(1.0)
            stop.touch()
            seen = json.loads(reader.communicate(timeout=120)[0])
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"BI file: {sum(export.rows.values()):,} rows in {len(export.rows)} tables")
        print(f"  export wall time         {export.seconds:8.2f} s")
        print(f"  file size                {export.size_bytes / 1e6:8.1f} MB")
        print(f"  peak memory (benchmark)  {peak_gb:8.2f} GB")
        print(f"  reader: {seen['reads']} reads during the export, {seen['error_count']} errors {seen['errors']}")
        if seen["error_count"]:
            raise SystemExit("a reader failed while the BI file was replaced")


if __name__ == "__main__":
    main()
