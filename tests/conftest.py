"""Session-wide test settings: isolated Prefect home, and the databases the tests run against.

PostgreSQL tests use ``PHALA_SYNC_TEST_POSTGRES_URL`` (default: this machine kind's server at
127.0.0.1:5432, database ``test``) and are skipped, with the reason shown, when it is unreachable.
"""

from __future__ import annotations

import os
import tempfile

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

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
