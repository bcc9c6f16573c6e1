"""Security: the API key never leaks; SQL only through binds; the simulator's admin API is guarded.

Where the key must never show: log records of every level and logger (httpx and httpcore at
DEBUG, the SQL log at INFO with parameters), error messages and their chains, every table of the
database (and, on SQLite, the raw bytes of its files), and the ``--help`` of every CLI command.
Prefect artifacts, flow parameters and flow logs are checked by the flow's own tests
(tests/flows/test_sync_flow.py, under the real Prefect test harness), not repeated here.
"""

from __future__ import annotations

import ast
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import Engine, MetaData, event, inspect, select

from simulator import AdminClient, SimulatorServer, SimulatorTransport, simulator_of
from sync.errors import AuthError, InvalidEnvelopeError, RetriableApiError
from sync.run import run_sync
from tests.reliability.conftest import ADMIN_TOKEN, EVOLVE, Harness, new_harness
from tests.reliability.oracle import table

ROOT = Path(__file__).resolve().parents[2]
#: A Phala-shaped key, and one that only the client's own list of secrets can recognize.
KEYS = {
    "phak key": "phak_Kx9QwZ3vTq7LmN2pR8sY4uB6dF1hJ0cE",
    "opaque key": "opaque-7Gv2Nq9Xw4Zr8Tk1Ls6Hp3Dy5Mb0Jf",
}
HTTP_LOGGERS = ("httpx", "httpcore", "sync", "uvicorn", "asyncio")


def shows(key: str, text: str | bytes) -> bool:
    """Whether ``text`` shows the key or any 12 characters of it in a row (a cut-off key leaks)."""
    windows = {key[i : i + 12] for i in range(len(key) - 11)}
    if isinstance(text, bytes):
        return any(w.encode() in text for w in windows)
    return any(w in text for w in windows)


class EchoingTransport(httpx.AsyncBaseTransport):
    """The simulator, except that one request gets an answer echoing the request's API key."""

    def __init__(self, inner: httpx.AsyncBaseTransport, kind: str, path: str) -> None:
        self.inner = inner
        self.kind = kind
        self.path = path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != self.path or request.url.params.get("page") != "2":
            return await self.inner.handle_async_request(request)
        key = request.headers["X-API-Key"]
        headers = {"X-Request-ID": f"req-{key}", "X-Debug-Key": key}
        if self.kind == "401 JSON":
            return httpx.Response(401, json={"detail": f"Invalid API key {key}"}, headers=headers)
        if self.kind == "403 structured":
            body = {
                "error_code": "ERR-01-001",
                "message": f"key {key} lacks rights",
                "request_id": key,
                "details": [{"field": "X-API-Key", "value": key, "message": "forbidden"}],
                "suggestions": [f"rotate {key}"],
                "links": [],
            }
            return httpx.Response(403, json=body, headers=headers)
        if self.kind == "503 HTML":
            html = f"<html><body>upstream refused X-API-Key: {key}</body></html>"
            return httpx.Response(503, text=html, headers=headers)
        if self.kind == "200 not JSON":
            html = f"Invalid key: {key} (blocked by the proxy)"
            return httpx.Response(200, text=html, headers=headers)
        raise AssertionError(self.kind)

    async def aclose(self) -> None:
        await self.inner.aclose()


def error_texts(exc: BaseException) -> str:
    """Every message of an exception, its notes, its causes and contexts, and the traceback."""
    return "".join(traceback.format_exception(exc))


def database_text(engine: Engine) -> str:
    """Every row of every table in the database (the migration table too), as text."""
    names = inspect(engine).get_table_names()
    assert {"sync_runs", "cvms", "change_events", "quarantined_items"} <= set(names)
    meta = MetaData()
    meta.reflect(engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for name in names:
            parts.extend(repr(tuple(row)) for row in conn.execute(select(meta.tables[name])))
    return "\n".join(parts)


def sqlite_bytes(engine: Engine) -> bytes:
    database = engine.url.database
    assert database
    return b"".join(p.read_bytes() for p in Path(database).parent.glob(Path(database).name + "*"))


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at every level, the HTTP libraries' DEBUG records and the SQL included."""
    # Statements and their parameters (DEBUG would add every result row). First: each set_level
    # also sets the capturing handler's level, and the last one must be DEBUG.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_not_in_logs(key: str, caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged: the capture is not working"
    for record in caplog.records:
        assert not shows(key, record.getMessage()), record.name
        if record.exc_info and record.exc_info[1] is not None:
            assert not shows(key, error_texts(record.exc_info[1])), record.name
    assert not shows(key, caplog.text)


def harness_with_key(engine: Engine, key: str) -> Harness:
    h = new_harness(engine)
    simulator_of(h.app).api_key = key
    h.defaults["api_key"] = SecretStr(key)
    return h


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_the_key_never_leaks(engine: Engine, logs: pytest.LogCaptureFixture, key: str) -> None:
    h = harness_with_key(engine, key)
    settings = h.settings()
    for text in (str(settings), repr(settings), settings.model_dump_json(), repr(settings.api_key)):
        assert not shows(key, text)
    # A run that rides out faults and sets invalid items aside, over a real socket (httpcore).
    with SimulatorServer(app=h.app) as server:
        h.faults.set(
            [
                "429:endpoint=cvms,page=2,times=2,retry_after=0",
                "503:endpoint=apps,page=1,times=1",
                "drop:endpoint=cvms,page=3,times=1",
                "truncated:endpoint=cvms,page=4,times=1",
                "drift:endpoint=cvms,what=missing,share=0.02",
            ]
        )
        first = run_sync(h.engine, h.settings(base_url=server.base_url, max_invalid_share=0.2))
        assert first.status == "succeeded"
        assert first.quarantined > 0
        assert any(r.name.startswith("httpcore") for r in logs.records), {
            r.name for r in logs.records
        }
        assert any(r.name == "httpx" for r in logs.records)
        h.fleet.evolve(EVOLVE, seed=3)
        h.faults.set(["503:endpoint=apps,page=2"])
        with pytest.raises(RetriableApiError) as failed:
            run_sync(h.engine, h.settings(base_url=server.base_url))
        assert not shows(key, error_texts(failed.value))
    # Servers that echo the key back, in a body, a header, a request id: every failure is clean.
    h.faults.set([])
    for kind, path, error in (
        ("401 JSON", "/api/v1/apps", AuthError),
        ("403 structured", "/api/v1/cvms/paginated", AuthError),
        ("503 HTML", "/api/v1/apps", RetriableApiError),
    ):
        transport = EchoingTransport(SimulatorTransport(h.app), kind, path)
        with pytest.raises(error) as echoed:
            run_sync(h.engine, h.settings(), transport=transport)
        assert not shows(key, error_texts(echoed.value)), kind
    # Nothing anywhere: the logs, every table, the database files.
    assert_not_in_logs(key, logs)
    assert not shows(key, database_text(h.engine))
    if h.engine.dialect.name == "sqlite":
        h.engine.dispose()
        assert not shows(key, sqlite_bytes(h.engine))


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_a_200_answer_that_echoes_the_key_does_not_leak_it(
    engine: Engine, logs: pytest.LogCaptureFixture, key: str
) -> None:
    h = harness_with_key(engine, key)
    transport = EchoingTransport(SimulatorTransport(h.app), "200 not JSON", "/api/v1/apps")
    with pytest.raises(InvalidEnvelopeError) as echoed:
        run_sync(h.engine, h.settings(), transport=transport)
    problems = []
    if shows(key, error_texts(echoed.value)):
        problems.append("error message")
    if shows(key, logs.text):
        problems.append("logs")
    if shows(key, database_text(h.engine)):
        problems.append("database (sync_runs.error)")
    assert problems == []


# ---------------------------------------------------------------------------------------- CLI
Path_ = tuple[str, ...]


def commands(group: click.Group, ctx: click.Context, path: Path_ = ()) -> Iterator[Path_]:
    """The path of every command and subcommand of ``group``."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, ctx, (*path, name))


def test_no_cli_help_shows_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli_module = pytest.importorskip("sync.cli")
    key = KEYS["phak key"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"PHALA_CLOUD_API_KEY={key}\n")
    monkeypatch.setenv("PHALA_CLOUD_API_KEY", key)
    cli = cli_module.cli
    paths = [(), *commands(cli, click.Context(cli))]
    assert len(paths) >= 10  # sync, serve, db ..., runs, inventory, history, changes, demo, ...
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"], catch_exceptions=False)
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert not shows(key, result.output), path
    # A command that fails on its settings says why without the key.
    for args in (
        ["sync", "--api-version", "1999-01-01"],
        ["sync", "--database-url", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"],
        ["runs", "--database-url", "mysql://u:pw@h/db"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code != 0, args
        assert not shows(key, result.output), args


# ------------------------------------------------------------------------------- SQL and binds
#: Calls whose first argument is SQL text.
SQL_CALLS = {"text", "exec_driver_sql", "execute", "executemany", "copy", "literal_column"}
#: Reviewed SQL built with Python string operations, and why it is safe: identifiers only.
ALLOWED_DYNAMIC_SQL = {
    ("sync/store/bulk.py", "copy_rows"): "COPY of quoted table and column names from metadata",
    ("sync/store/bulk.py", "analyze"): "ANALYZE of a quoted table name from metadata",
    ("migrations/versions/0003_bi_views.py", "create_views"): (
        "CREATE VIEW of the migration's own view names and SELECTs (no value from outside)"
    ),
    ("migrations/versions/0003_bi_views.py", "drop_views"): "DROP VIEW of the view name constants",
    ("migrations/versions/0003_bi_views.py", "_fill_rates"): (
        "UPDATE whose SET list is built from the rate column name constants"
    ),
    ("migrations/versions/0005_fleet_levels.py", "upgrade"): (
        "CREATE VIEW of the migration's own view names and SELECTs (no value from outside)"
    ),
    ("migrations/versions/0005_fleet_levels.py", "downgrade"): (
        "CREATE VIEW of 0003's own fleet_daily SELECT (no value from outside)"
    ),
    ("sync/report/data.py", "resolve_window"): (
        "a constant WHERE fragment chosen in code; the target is a bound parameter"
    ),
    ("sync/report/data.py", "workspaces_now"): (
        "constant column and WHERE fragments and the TOP_WORKSPACES constant; values are bound"
    ),
    ("sync/store/views.py", "grant_reader"): (
        "GRANT to a role and schema quoted by the dialect's identifier preparer"
    ),
}


def dynamic_sql_calls(path: Path) -> Iterator[tuple[str, int]]:
    """(function, line) of each SQL call whose SQL is an f-string, a % or + or .format() build."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func_node = node.func
            if isinstance(func_node, ast.Attribute):
                name = func_node.attr
            else:
                name = func_node.id if isinstance(func_node, ast.Name) else ""
            sql = node.args[0]
            formatted = isinstance(sql, ast.BinOp) and isinstance(sql.op, ast.Mod | ast.Add)
            dot_format = (
                isinstance(sql, ast.Call)
                and isinstance(sql.func, ast.Attribute)
                and sql.func.attr == "format"
            )
            built = isinstance(sql, ast.JoinedStr) or formatted or dot_format
            if name in SQL_CALLS and built:
                yield func.name, node.lineno


def test_no_sql_is_built_from_strings() -> None:
    sources = [
        p
        for folder in ("sync", "models", "migrations")
        for p in sorted((ROOT / folder).rglob("*.py"))
    ]
    assert len(sources) > 20
    found = {
        (str(p.relative_to(ROOT)), func): line
        for p in sources
        for func, line in dynamic_sql_calls(p)
    }
    unreviewed = {k: v for k, v in found.items() if k not in ALLOWED_DYNAMIC_SQL}
    assert unreviewed == {}, "SQL built from strings: use SQLAlchemy constructs and binds"
    # The scan does find what it looks for (the reviewed COPY), so it is not silently blind.
    assert set(found) == set(ALLOWED_DYNAMIC_SQL)


NASTY_TARGET = "o'brien\"; DROP TABLE cvms; --"


def test_every_statement_carries_values_as_parameters(engine: Engine) -> None:
    """Every statement a run executes keeps data values out of its SQL text.

    The target name is hostile SQL; CVM names, ids, the API version and the statuses are data too.
    None may appear in a statement's text; they must all travel as parameters.
    """
    h = new_harness(engine, size=60)
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        h.defaults["target"] = NASTY_TARGET
        h.faults.set(["drift:endpoint=cvms,what=missing,share=0.1"])
        h.run(max_invalid_share=0.5)
        h.fleet.evolve(EVOLVE, seed=3)
        h.faults.set(["503:endpoint=apps,page=2"])
        with pytest.raises(RetriableApiError):
            h.run()
        h.faults.set([])
        h.run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    cvms = h.fleet.cvms()
    values = [NASTY_TARGET, "2026-01-21", "'succeeded'", "'failed'", "'running'", "'cvm'"]
    values += [c.name for c in cvms] + [c.key for c in cvms] + [c.hashid for c in cvms]
    assert len(statements) > 50
    with_parameters = 0
    for statement, parameters in statements:
        for value in values:
            assert value not in statement, (value, statement[:200])
        with_parameters += bool(parameters)
    assert with_parameters > len(statements) / 2
    # And the hostile target went in and came out intact, as data.
    with h.engine.connect() as conn:
        targets = set(conn.execute(select(table("cvms").c.target)).scalars())
    assert targets == {NASTY_TARGET}


# ------------------------------------------------------------------------ the simulator's admin
ADMIN_ROUTES = [
    ("POST", "/admin/evolve", {"counts": {"delete": 5}}),
    ("GET", "/admin/changes", None),
    ("GET", "/admin/snapshot", None),
    ("GET", "/admin/state", None),
    ("GET", "/admin/faults", None),
    ("PUT", "/admin/faults", {"faults": ["503"]}),
    ("POST", "/admin/faults", {"faults": ["503"]}),
    ("DELETE", "/admin/faults", None),
]


@pytest.mark.parametrize("admin_token", [ADMIN_TOKEN, None], ids=["with token", "disabled"])
def test_the_admin_api_refuses_requests_without_its_token(
    engine: Engine, admin_token: str | None
) -> None:
    h = new_harness(engine, size=30)
    simulator_of(h.app).admin_token = admin_token
    with SimulatorServer(app=h.app) as server, httpx.Client(base_url=server.admin_url) as http:
        api_key = simulator_of(h.app).api_key
        refusals = {
            "no token": ({}, 403 if admin_token is None else 401),
            "wrong token": ({"X-Admin-Token": "not-the-token"}, 403),
            "the API key": ({"X-Admin-Token": api_key}, 403),
            "API key header": ({"X-API-Key": api_key}, 403 if admin_token is None else 401),
            "empty token": ({"X-Admin-Token": ""}, 403 if admin_token is None else 401),
        }
        for method, path, body in ADMIN_ROUTES:
            for what, (headers, status) in refusals.items():
                response = http.request(method, path, json=body, headers=headers)
                assert response.status_code == status, (method, path, what)
                assert "snapshot" not in response.text
                assert "vm_uuid" not in response.text
        # Nothing refused had an effect.
        assert h.fleet.step_count == 0
        assert simulator_of(h.app).faults.rules == []
        if admin_token is not None:
            with AdminClient(server.base_url, admin_token) as admin:
                assert admin.state()["cvms"] == 30
                admin.evolve({"delete": 1})
            assert h.fleet.step_count == 1
        else:
            with (
                AdminClient(server.base_url, "anything") as admin,
                pytest.raises(RuntimeError, match="403"),
            ):
                admin.state()
        # The admin token is not an API key either.
        r = http.get("/api/v1/cvms/paginated", headers={"X-API-Key": ADMIN_TOKEN})
        assert r.status_code == 401


def test_a_wrong_key_fails_clearly_without_showing_either_key(engine: Engine) -> None:
    h = new_harness(engine, size=30)
    wrong = "phak_wrong_key_that_must_not_show_0000"
    exc = h.fail(AuthError, api_key=SecretStr(wrong))
    text = error_texts(exc)
    assert not shows(wrong, text)
    assert not shows(simulator_of(h.app).api_key, text)
    assert "401" in str(exc)
    assert "PHALA_CLOUD_API_KEY" in str(exc)
