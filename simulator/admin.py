"""A small client for a running simulator's admin endpoints (evolve, ground truth, faults)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx


class AdminClient:
    """Talks to ``/admin/...`` of a simulator; ``url`` may be the API base URL (``.../api/v1``)."""

    def __init__(self, url: str, admin_token: str, *, timeout: float = 60.0) -> None:
        root = url.rstrip("/").removesuffix("/api/v1")
        self._http = httpx.Client(
            base_url=f"{root}/admin", headers={"X-Admin-Token": admin_token}, timeout=timeout
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise RuntimeError(
                f"simulator admin {method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def evolve(
        self,
        counts: Mapping[str, int] | None = None,
        *,
        seed: int | None = None,
        total: int | None = None,
    ) -> dict[str, Any]:
        """One evolve step: ``{"step": index, "changes": [...]}``."""
        body: dict[str, Any] = {}
        if counts is not None:
            body["counts"] = dict(counts)
        if seed is not None:
            body["seed"] = seed
        if total is not None:
            body["total"] = total
        result: dict[str, Any] = self._call("POST", "/evolve", json=body)
        return result

    def changes(self, since: int = 0) -> list[list[dict[str, Any]]]:
        result: list[list[dict[str, Any]]] = self._call("GET", "/changes", params={"since": since})
        return result

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/snapshot")
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/state")
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def set_faults(
        self, rules: Sequence[str | Mapping[str, Any]], *, seed: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"faults": list(rules)}
        if seed is not None:
            body["seed"] = seed
        result: dict[str, Any] = self._call("PUT", "/faults", json=body)
        return result

    def add_faults(self, rules: Sequence[str | Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/faults", json={"faults": list(rules)})
        return result

    def clear_faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", "/faults")
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
