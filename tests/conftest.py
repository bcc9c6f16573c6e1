"""Session-wide test settings: isolated Prefect home, and the databases the tests run against.

PostgreSQL tests use ``PHALA_SYNC_TEST_POSTGRES_URL`` (default: this machine kind's server at
127.0.0.1:5432, database ``test``) and are skipped, with the reason shown, when it is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from sync.store import migrate
from sync.store.engine import make_engine, normalize_database_url
from sync.store.migrate import current_revision, head_revision, upgrade
from tests.db_templates import PostgresTemplate, SqliteTemplate, schema_url

_PREFECT_HOME = tempfile.mkdtemp(prefix="phala-sync-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# Keep a developer's own configuration out of the tests.
for _name in list(os.environ):
    if _name.startswith("PHALA_SYNC_") and _name != "PHALA_SYNC_TEST_POSTGRES_URL":
        del os.environ[_name]
os.environ.pop("PHALA_CLOUD_API_KEY", None)
os.environ.pop("PHALA_CLOUD_API_PREFIX", None)

#: The Prefect test server and the served simulator, for tests/flows and tests/sync/cli.
pytest_plugins = ("tests.flow_fixtures",)

#: Hypothesis profiles: the default one is the tests' own example counts (make test); "edit"
#: (make test-fast, ``--hypothesis-profile=edit``) draws at most 10 examples per property, as
#: Hypothesis's documentation suggests for a development loop. Cases are derandomized, so both
#: profiles draw the same first examples.
settings.register_profile("edit", max_examples=10)

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("PHALA_SYNC_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


_pg_state: dict[str, str | None] = {}


def postgres_unavailable_reason() -> str | None:
    """None when the test PostgreSQL answers, else why not (checked once per session)."""
    if "reason" not in _pg_state:
        url = postgres_base_url()
        try:
            probe = create_engine(normalize_database_url(url), connect_args={"connect_timeout": 3})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = (
                f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} "
                f"unreachable ({type(exc).__name__}); set PHALA_SYNC_TEST_POSTGRES_URL"
            )
    return _pg_state["reason"]


def _require_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh, private, empty schema (dropped afterwards)."""
    with private_postgres_url() as url:
        yield url


@contextlib.contextmanager
def private_postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh, private, empty schema (dropped afterwards)."""
    _require_postgres()
    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_database_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'phala-sync.db'}"


#: The marks of a test's PostgreSQL run when the same test runs on SQLite too.
POSTGRES_TWIN = (pytest.mark.postgres, pytest.mark.postgres_twin)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=POSTGRES_TWIN)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on SQLite and on the real PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    """This process's SQLite file, migrated to head by the real chain (tests/db_templates.py)."""
    return SqliteTemplate.create(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_template() -> PostgresTemplate:
    """This process's recording of the real chain on PostgreSQL (tests/db_templates.py)."""
    _require_postgres()
    return PostgresTemplate.create(postgres_base_url())


@pytest.fixture
def engine(database_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on ``database_url``, migrated to head.

    A copy of this process's template (tests/db_templates.py), which the real Alembic chain
    migrated, checked to be at the template's head revision. Tests marked ``migration_chain``,
    and databases that are not empty when the fixture starts, get the real chain instead.
    """
    with migrated_engine(database_url, request) as eng:
        yield eng


@contextlib.contextmanager
def shared_engine(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database of ``kind`` (``sqlite``/``postgresql``) for a fixture wider than a
    test (a module's read-only tests share one expensive history), dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'phala-sync.db'}"
        with migrated_engine(url, request) as eng:
            yield eng
        return
    with private_postgres_url() as url, migrated_engine(url, request) as eng:
        yield eng


@contextlib.contextmanager
def migrated_engine(database_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The ``engine`` fixture's database at any fixture scope (see there)."""
    eng = make_engine(database_url)
    template: SqliteTemplate | PostgresTemplate | None = None
    if not request.node.get_closest_marker("migration_chain"):
        if eng.dialect.name == "sqlite":
            path = Path(str(eng.url.database))
            if not path.exists():
                template = request.getfixturevalue("sqlite_template")
                template.copy_to(path)
        elif not inspect(eng).get_table_names():
            template = request.getfixturevalue("postgres_template")
            template.replay(eng)
    if template is None:
        upgrade(eng)
    else:
        revision = current_revision(eng)
        assert revision == template.revision, (
            f"a copy at {revision}, its template at {template.revision}"
        )
    yield eng
    eng.dispose()


#: A test-only revision on top of this release's head: what a database is "older" than.
NEXT_REVISION = "zz_test_next"


@pytest.fixture
def next_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """From here on the code is one revision ahead: the migrations plus a test-only revision.

    Works whatever this release's head is; returns that head, the revision a database migrated
    before this fixture (list ``engine`` first) is at, and so now one revision behind.
    """
    old_head = head_revision()
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / f"{NEXT_REVISION}.py").write_text(
        f"revision = {NEXT_REVISION!r}\n"
        f"down_revision = {old_head!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n"
        "from alembic import op\n"
        "import sqlalchemy as sa\n\n\n"
        "def upgrade() -> None:\n"
        "    op.create_table('zz_probe', sa.Column('id', sa.Integer(), primary_key=True))\n\n\n"
        "def downgrade() -> None:\n"
        "    op.drop_table('zz_probe')\n"
    )
    monkeypatch.setattr(migrate, "SCRIPT_LOCATION", scripts)
    return old_head


# ------------------------------------------------------------------------ markers and xdist rules
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the session's Prefect test server (``prefect_api_url``) must be marked
    ``xdist_group("prefect")``, so that one xdist worker (``--dist loadgroup``) starts that
    server, not each. (A mark added here would come too late for xdist's workers.)"""
    for item in items:
        if "prefect_api_url" in getattr(item, "fixturenames", ()):
            groups = [m.args[0] for m in item.iter_markers("xdist_group") if m.args]
            if "prefect" not in groups:
                raise pytest.UsageError(
                    f'{item.nodeid} uses prefect_api_url: mark it xdist_group("prefect")'
                )


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report


@pytest.fixture(autouse=True)
def _child_processes_are_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A test that starts a child process (a Prefect server included) must say so with the
    ``subprocess`` or ``prefect`` marker: ``make test-fast`` leaves those out."""
    if any(request.node.get_closest_marker(m) for m in ("subprocess", "prefect")):
        yield
        return
    started: list[str] = []
    advice = (
        "mark the test `subprocess` (or `prefect` if it runs a Prefect server or flow), so that"
        " `make test-fast` leaves it out"
    )

    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[bytes], args: Any, *rest: Any) -> Any:
        """Refuses Python, a program of this environment (phala-sync, prefect) or ``timeout``;
        a library's probe of a system tool (``file``, ``ldconfig``) is let through."""
        argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
        program = Path(os.fsdecode(argv[0])) if argv else Path()
        ours = program.name.startswith("python") or program.name == "timeout"
        if ours or program.parent == Path(sys.executable).parent:
            started.append(repr(args))
            raise AssertionError(f"{request.node.nodeid} starts {args!r}: {advice}")
        return execute_child(self, args, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess.Popen, "_execute_child", refuse)
        yield
    # The refusal may have been caught and turned into something else: fail the test anyway.
    if started and request.node.stash.get(_CALL_PASSED, False):
        pytest.fail(f"started child processes {started}: {advice}")
