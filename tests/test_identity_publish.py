"""The identity tables are published together: a run killed mid-publish leaves all or none swapped.

The kill is real: a child process publishes, pauses inside the swap transaction after some tables
were already swapped, and is killed with SIGKILL. The database must roll the whole swap back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from crm_pipelines.assets.core import IDENTITY_TABLES
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse, WarehouseError, dispose_engines

CHILD = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from crm_pipelines.warehouse import Warehouse

    url, version, tables, pause_after = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
    swapped = []

    def pause(table):
        swapped.append(table)
        if len(swapped) == pause_after:
            print("swapped", flush=True)
            time.sleep(600)

    frames = {t: pd.DataFrame({"version": [version] * 3, "n": [1, 2, 3]}) for t in tables}
    Warehouse(url).publish_together("core", frames, on_swapped=pause)
    print("done", flush=True)
    """
)


def publish_in_child(url: str, version: str, pause_after: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, version, ",".join(IDENTITY_TABLES), str(pause_after)],
        stdout=subprocess.PIPE,
        text=True,
    )


def versions(url: str) -> dict[str, set[str]]:
    wh = Warehouse(url)
    try:
        return {t: set(wh.read_table(CORE, t)["version"]) for t in IDENTITY_TABLES}
    finally:
        dispose_engines()


def test_publish_together_swaps_every_table(warehouse_url):
    dispose_engines()
    child = publish_in_child(warehouse_url, "one", pause_after=0)
    assert child.communicate(timeout=120)[0].strip() == "done"
    assert versions(warehouse_url) == {t: {"one"} for t in IDENTITY_TABLES}


def test_killed_mid_publish_leaves_all_tables_as_they_were(warehouse_url):
    pause_after = 2  # two of the seven swapped, as a kill once left them before publishing was joint
    dispose_engines()
    first = publish_in_child(warehouse_url, "yesterday", pause_after=0)
    assert first.communicate(timeout=120)[0].strip() == "done"
    child = publish_in_child(warehouse_url, "today", pause_after=pause_after)
    try:
        assert child.stdout.readline().strip() == "swapped"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert versions(warehouse_url) == {t: {"yesterday"} for t in IDENTITY_TABLES}
    # And the next run publishes cleanly over the leftovers of the killed one.
    again = publish_in_child(warehouse_url, "today", pause_after=0)
    assert again.communicate(timeout=120)[0].strip() == "done"
    assert versions(warehouse_url) == {t: {"today"} for t in IDENTITY_TABLES}


# -- the incremental path: only changed rows are written, still all or none --------------------------

CHANGES_CHILD = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from crm_pipelines.table_changes import TableChange, publish_changes
    from crm_pipelines.warehouse import Warehouse

    url, tables, pause_after = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    applied = []

    def pause(table):
        applied.append(table)
        if len(applied) == pause_after:
            print("applied", flush=True)
            time.sleep(600)

    # Keys 2 and 5 change, 7 is new, 3 is retired without a successor; the last table only appends.
    rows = pd.DataFrame({"k": ["2", "5", "7"], "version": ["today"] * 3, "n": [20, 50, 70]})
    changes = {t: TableChange(rows, key=("k",), replaced=pd.DataFrame({"k": ["2", "3", "5", "7"]})) for t in tables}
    changes[tables[-1]] = TableChange(rows)
    written = publish_changes(Warehouse(url), "core", changes, {}, on_applied=pause)
    print("done", sorted(set(written.values())), flush=True)
    """
)


def yesterday_tables(url: str) -> None:
    frame = pd.DataFrame({"k": [str(k) for k in range(1, 7)], "version": ["yesterday"] * 6, "n": range(1, 7)})
    Warehouse(url).publish_together("core", {t: frame for t in IDENTITY_TABLES})
    dispose_engines()


def changes_in_child(url: str, pause_after: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHANGES_CHILD, url, ",".join(IDENTITY_TABLES), str(pause_after)],
        stdout=subprocess.PIPE,
        text=True,
    )


def contents(url: str) -> dict[str, list[tuple]]:
    wh = Warehouse(url)
    try:
        return {
            t: sorted(map(tuple, wh.read_table(CORE, t)[["k", "version", "n"]].astype(str).to_numpy().tolist()))
            for t in IDENTITY_TABLES
        }
    finally:
        dispose_engines()


def test_publish_changes_writes_only_the_changed_rows(warehouse_url):
    yesterday_tables(warehouse_url)
    child = changes_in_child(warehouse_url, pause_after=0)
    assert child.communicate(timeout=120)[0].strip() == "done [3]"
    after = contents(warehouse_url)
    untouched = [(k, "yesterday", k) for k in ("1", "4", "6")]
    today = [("2", "today", "20"), ("5", "today", "50"), ("7", "today", "70")]
    for table in IDENTITY_TABLES[:-1]:
        # The same result a whole-table publish of yesterday's rows with the changes applied gives.
        assert after[table] == sorted(untouched + today), table
    appended = sorted([(str(k), "yesterday", str(k)) for k in range(1, 7)] + today)
    assert after[IDENTITY_TABLES[-1]] == appended
    wh = Warehouse(warehouse_url)
    try:
        leftovers = [
            t for t in IDENTITY_TABLES for kind in ("rows", "replaced") if wh.table_exists(CORE, f"{t}__{kind}")
        ]
    finally:
        dispose_engines()
    assert leftovers == []


def test_killed_mid_change_leaves_all_tables_as_they_were(warehouse_url):
    yesterday_tables(warehouse_url)
    before = contents(warehouse_url)
    child = changes_in_child(warehouse_url, pause_after=3)
    try:
        assert child.stdout.readline().strip() == "applied"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert contents(warehouse_url) == before
    # The next run applies cleanly over the side tables the killed one left behind.
    again = changes_in_child(warehouse_url, pause_after=0)
    assert again.communicate(timeout=120)[0].strip() == "done [3]"
    assert contents(warehouse_url)[IDENTITY_TABLES[0]] == sorted(
        [(k, "yesterday", k) for k in ("1", "4", "6")]
        + [("2", "today", "20"), ("5", "today", "50"), ("7", "today", "70")]
    )


def test_publish_changes_publishes_a_missing_table_whole(duckdb_url):
    from crm_pipelines.table_changes import TableChange, publish_changes

    wh = Warehouse(duckdb_url)
    frame = pd.DataFrame({"k": ["1"], "version": ["new"], "n": [1]})
    written = publish_changes(wh, "core", {"fresh": TableChange(frame, key=("k",))}, {"fresh": frame})
    assert written == {"fresh": 1}
    assert wh.read_table(CORE, "fresh")["version"].tolist() == ["new"]
    with pytest.raises(WarehouseError, match="core.other cannot take changed rows"):
        publish_changes(wh, "core", {"other": TableChange(frame, key=("k",))}, {})
