"""One sync run in a process of its own, for test_process_death to kill with SIGKILL.

Usage: ``python killable_sync.py DATABASE_URL BASE_URL [--pause-in-apply SECONDS]``; the API key
comes from ``PHALA_CLOUD_API_KEY`` as in production. The script prints ``ready`` once imported,
``staged <n>`` after each staged page, ``apply <step>`` at each step of the apply transaction
(after which it sleeps ``--pause-in-apply`` seconds, so that a kill lands inside the transaction)
and ``done <run id>`` at the end. Not a test module: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("base_url")
    parser.add_argument("--page-size", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--target", default="reliability")
    parser.add_argument("--pause-in-apply", type=float, default=0.0)
    args = parser.parse_args()

    import sync.run
    import sync.store.apply as apply_module
    import sync.store.ledger as ledger_module
    import sync.store.staging as staging_module
    from sync.run import run_sync
    from sync.settings import Settings
    from sync.store.engine import make_engine

    pause = args.pause_in_apply
    staged = 0
    write = staging_module.Stager._write

    def staging(self: Any, *a: Any, **kw: Any) -> None:
        nonlocal staged
        write(self, *a, **kw)
        staged += 1
        say(f"staged {staged}")

    staging_module.Stager._write = staging  # type: ignore[method-assign]

    def step(name: str, fn: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            result = fn(*a, **kw)
            say(f"apply {name}")
            if pause:
                time.sleep(pause)
            return result

        return wrapped

    applier = apply_module._EntityApplier
    applier._flush = step("flush", applier._flush)  # type: ignore[method-assign]
    applier.infer_deletions = step("deletions", applier.infer_deletions)  # type: ignore[method-assign]
    applier.infer_orphans = step("orphans", applier.infer_orphans)  # type: ignore[method-assign]
    apply_module.dedupe_staging = step("dedupe", apply_module.dedupe_staging)
    # run_sync's apply calls finish_run by the name sync.run imported.
    sync.run.finish_run = step("ledger", ledger_module.finish_run)  # type: ignore[attr-defined]

    # The arguments but --pause-in-apply are settings, by the same names.
    options = {name: value for name, value in vars(args).items() if name != "pause_in_apply"}
    settings = Settings(**options, lock_timeout=30, max_attempts=2, backoff_base=0.01)
    engine = make_engine(settings.database_url)
    say("ready")
    summary = run_sync(engine, settings)
    say(f"done {summary.run_id}")


if __name__ == "__main__":
    main()
