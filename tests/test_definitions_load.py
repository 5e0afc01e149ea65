"""Loading the Dagster definitions must not import the heavy libraries only runs need.

The webserver, the daemon and every run worker import ``crm_pipelines.definitions``; what it imports
at module level is paid on each of them. Splink, Great Expectations, scipy, scikit-learn, statsmodels,
the chart libraries, the source connectors (httpx, duckdb), pandas, numpy, pyarrow, SQLAlchemy and
staging's normalizers are imported inside the functions that use them. Each test imports the
definitions in a fresh interpreter, so modules other tests imported do not hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Top-level packages that definitions must not import (each costs from a few hundred ms to seconds).
HEAVY_MODULES = (
    "splink",
    "great_expectations",
    "scipy",
    "sklearn",
    "statsmodels",
    "matplotlib",
    "altair",
    "lifetimes",
    # The source connectors' libraries: a run that ingests imports them.
    "httpx",
    "duckdb",
    # The data libraries: Dagster itself imports none of them, so each is paid for by us alone. Table
    # schemas, check specs and metadata are declared with plain Python values; frames, Arrow tables
    # and SQLAlchemy statements are built inside the functions that run.
    "pandas",
    "numpy",
    "pyarrow",
    "sqlalchemy",
    # Staging's normalizers.
    "email_validator",
    "phonenumbers",
    "pycountry",
)

_PROBE = """
import builtins, json, sys, time
started = time.perf_counter()
import dagster
dagster_seconds = time.perf_counter() - started

# Which line of ours first imported each heavy library, for the failure message.
heavy = set(json.loads(sys.argv[1]))
first_imported_by = {}
plain_import = builtins.__import__

def watching_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.split(".")[0]
    if level == 0 and top in heavy and top not in sys.modules and top not in first_imported_by:
        frame = sys._getframe(1)
        while frame is not None and not frame.f_globals.get("__name__", "").startswith("crm_pipelines"):
            frame = frame.f_back
        first_imported_by[top] = f"{frame.f_globals['__name__']} line {frame.f_lineno}" if frame else "?"
    return plain_import(name, globals, locals, fromlist, level)

builtins.__import__ = watching_import
import crm_pipelines.definitions as module
builtins.__import__ = plain_import
defs = module.defs
defs.resolve_all_asset_keys()
total = time.perf_counter() - started
print(json.dumps({
    "dagster_seconds": dagster_seconds,
    "total_seconds": total,
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
    "first_imported_by": first_imported_by,
}))
"""


def _load_in_fresh_interpreter() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY_MODULES)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"importing crm_pipelines.definitions failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_definitions_do_not_import_heavy_libraries():
    probe = _load_in_fresh_interpreter()
    imported = sorted(set(HEAVY_MODULES) & set(probe["modules"]))
    culprits = ", ".join(f"{name} (first by {probe['first_imported_by'].get(name, '?')})" for name in imported)
    assert not imported, (
        f"loading crm_pipelines.definitions imported {culprits}: import them inside the functions that "
        "use them (see README, 'Definitions load')"
    )
    # Timing is printed, not asserted: a shared machine makes any threshold flaky.
    print(
        f"definitions load: {probe['total_seconds']:.2f} s in all, "
        f"of which importing dagster {probe['dagster_seconds']:.2f} s"
    )


def test_packages_export_nothing():
    """Package ``__init__`` files hold at most a docstring: importing a package imports no submodule."""
    for init in sorted((PROJECT_ROOT / "crm_pipelines").rglob("__init__.py")):
        code = [
            line for line in init.read_text().splitlines()
            if line.strip().startswith(("import ", "from ")) or "__getattr__" in line
        ]
        assert not code, f"{init.relative_to(PROJECT_ROOT)} imports or re-exports: {code}"
