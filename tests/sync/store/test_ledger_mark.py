"""The ledger mark reads ``sync_runs`` through a table of its own: it must be the model's."""

from __future__ import annotations

from models import SyncRun, table_of
from sync.store.ledger_mark import RUNS


def test_its_table_is_the_models_own() -> None:
    model = table_of(SyncRun)
    assert RUNS.name == model.name
    for c in RUNS.c:
        assert c.name in model.c
        assert type(c.type)._type_affinity is type(model.c[c.name].type)._type_affinity  # type: ignore[attr-defined]
