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

from crm_pipelines.assets.core import IDENTITY_TABLES
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse, dispose_engines

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
