"""Command line: ``python -m crm_pipelines.demo --out data/demo --people 5000 --seed 42``."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from crm_pipelines.demo.generator import DemoManifest, generate


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crm_pipelines.demo",
        description="Generate realistic, messy demo data for every source system, with ground truth.",
    )
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output directory (data/demo)")
    parser.add_argument("--people", type=_positive, default=5000, help="people in the population (5000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same files (42)")
    parser.add_argument("--end-date", type=_date, default=None, help="last day of activity (default: today)")
    parser.add_argument("--years", type=_positive, default=3, help="years of history before the end date (3)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when --out already holds a complete set for the same people and seed",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.if_missing:
        existing = DemoManifest.read(args.out)
        if (
            existing is not None
            and existing.is_complete()
            and (existing.people, existing.seed, existing.years) == (args.people, args.seed, args.years)
            and (args.end_date is None or existing.end_date == args.end_date)
        ):
            print(f"{args.out}: demo data for {args.people} people (seed {args.seed}) is already there")
            return 0

    started = time.perf_counter()
    try:
        manifest = generate(
            args.out, people=args.people, seed=args.seed, end_date=args.end_date, years=args.years
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote demo data for {args.people} people to {args.out} in {time.perf_counter() - started:.1f} s")
    for name, rows in manifest.counts.items():
        print(f"  {name:<34} {rows:>12,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
