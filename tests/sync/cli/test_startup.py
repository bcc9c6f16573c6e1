"""``phala-sync sync`` sends its first requests before it imports what only the run needs.

The listing sent ahead (sync.prefetching) reads the API while the rest of the command starts; the
sooner it begins, the more of a distant API's listing is read by the time the run claims it. So
the command imports its modules when it runs them (sync.cli.group), the ``sync`` package names its
parts lazily, and the schema check (Alembic) comes after ``begin``. Checked in a fresh interpreter:
in this one, everything is imported already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.children import base_env

pytestmark = pytest.mark.subprocess

#: Imported by the time the prefetch begins, they would delay it: the migration tool, Prefect and
#: the flow, the run and its stages.
LATER = ("alembic", "prefect", "flows", "sync.run", "sync.store.apply", "sync.cli.prefect")

CHILD = """
import os, sys
import orjson
from sync import prefetching
from sync.cli import main

def begin(engine, settings, **options):
    print(orjson.dumps([m for m in LATER if m in sys.modules]).decode(), flush=True)
    os._exit(0)

prefetching.begin = begin
sys.argv = ["phala-sync", "sync", "--database-url", DATABASE_URL]
main()
"""


def test_sync_begins_sending_before_it_imports_alembic_prefect_or_the_run(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'x.db'}"
    code = f"LATER = {LATER!r}\nDATABASE_URL = {database_url!r}\n{CHILD}"
    env = base_env(PHALA_CLOUD_API_KEY="phak_startup_test")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == [], done.stdout
    assert not (tmp_path / "x.db").exists()  # nothing asked for created the database either
