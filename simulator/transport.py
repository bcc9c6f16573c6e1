"""An in-process httpx transport over the simulator app (no sockets, no threads).

``httpx.ASGITransport`` re-raises whatever the app raises; a simulated connection drop then
surfaces as the simulator's own exception. This transport turns it into the
``httpx.RemoteProtocolError`` a real dropped connection gives, so client code sees the same error
in process as over loopback. Timeouts are not enforced in process (httpx leaves them to the
network backend): test the ``timeout`` fault over loopback.
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from simulator.app import SimulatedDisconnect


class SimulatorTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=SimulatorTransport(create_app(api_key=...)))``."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except SimulatedDisconnect as exc:
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body ({exc})",
                request=request,
            ) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
