"""Open a page in headless Chromium as a person would, and report what the browser saw.

Debian's ``chromium`` runs headless with a DevTools port; this module speaks the DevTools protocol
over its websocket (``websockets``, already installed with Prefect) to load the page, and records:

- every request the page made (``Network.requestWillBeSent``): only the page's own ``file://``
  URL may appear. Chromium also runs with ``--proxy-server=127.0.0.1:9`` (nothing listens there),
  so a request that slipped through would fail rather than reach a network;
- every console message and uncaught exception (``Runtime.consoleAPICalled``,
  ``Runtime.exceptionThrown``, ``Log.entryAdded``), which is also where a Content-Security-Policy
  refusal shows;
- what the page shows: each chart's SVG and its data marks, and each table's cells, read from the
  DOM after load (the page has no script; the reading is done by DevTools);
- a full-page PNG screenshot.

Run as a script to screenshot a report: ``python -m tests.sync.report.browser REPORT.html OUT.png``
(how docs/img/report.png is made from the demo's report).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1400

#: Read in the page by DevTools after load: charts, their marks, and every marked table.
READ_PAGE = """
(() => {
  const charts = [...document.querySelectorAll('section.chart')].map(s => ({
    key: s.id,
    svg: !!s.querySelector('svg'),
    marks: s.querySelectorAll('svg [id^="mark-"]').length,
    note: (s.querySelector('p.note') || {}).textContent || null,
  }));
  const tables = {};
  for (const t of document.querySelectorAll('table[data-chart]')) {
    tables[t.dataset.chart] = [...t.querySelectorAll('tbody tr')].map(tr => ({
      key: tr.dataset.key,
      cells: Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map(
        td => [td.dataset.col, td.dataset.value])),
      text: [...tr.querySelectorAll('td')].map(td => td.textContent),
    }));
  }
  return {
    title: document.title,
    header: (document.querySelector('header') || {}).innerText || null,
    charts, tables,
    scripts: document.querySelectorAll('script').length,
    height: document.documentElement.scrollHeight,
  };
})()
"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    """What the browser saw while loading one page."""

    url: str
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None


class _DevTools:
    """A minimal DevTools client: numbered commands, events kept until read."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if "method" in message:
                self.events.append(message)


def _devtools_port(proc: subprocess.Popen[str], timeout: float) -> int:
    """The port Chromium chose, from its "DevTools listening on ws://127.0.0.1:PORT/..." line."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line.strip())
        if "DevTools listening on ws://" in line:
            return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    raise RuntimeError("Chromium did not open its DevTools port:\n" + "\n".join(seen[-20:]))


def visit(page: Path, *, screenshot: Path | None = None, timeout: float = 90.0) -> PageVisit:
    """Load ``page`` in headless Chromium; return the requests, errors, DOM reading, screenshot."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium)")
    url = page.resolve().as_uri()
    result = PageVisit(url)
    with tempfile.TemporaryDirectory(prefix="phala-sync-chromium-") as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--proxy-server=127.0.0.1:9",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},1000",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            port = _devtools_port(proc, timeout)
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(ws_url, max_size=None, open_timeout=timeout) as ws:
                tools = _DevTools(ws)
                for domain in ("Page", "Network", "Runtime", "Log"):
                    tools.call(f"{domain}.enable")
                tools.call("Page.navigate", url=url)
                tools.wait_for("Page.loadEventFired", timeout)
                reading = tools.call("Runtime.evaluate", expression=READ_PAGE, returnByValue=True)
                result.page = reading["result"]["value"]
                if screenshot is not None:
                    height = int(result.page["height"])
                    tools.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=WIDTH,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    shot = tools.call("Page.captureScreenshot", format="png", timeout=timeout)
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                    result.screenshot = screenshot
                _collect(tools.events, result)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
    return result


def _collect(events: list[dict[str, Any]], result: PageVisit) -> None:
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            result.requests.append(str(params["request"]["url"]))
        elif method == "Network.loadingFailed":
            result.failed.append(str(params.get("errorText")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            result.console_errors.append(json.dumps(params.get("args", []))[:500])
        elif method == "Runtime.exceptionThrown":
            result.console_errors.append(str(params.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            result.console_errors.append(str(params["entry"].get("text"))[:500])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.sync.report.browser REPORT.html OUT.png")
    seen = visit(Path(sys.argv[1]), screenshot=Path(sys.argv[2]))
    print(f"requests: {seen.requests}\nconsole errors: {seen.console_errors}")
    print(f"charts: {[(c['key'], c['marks']) for c in seen.page['charts']]}")
    print(f"screenshot: {seen.screenshot}")
