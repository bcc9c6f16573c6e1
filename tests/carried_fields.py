"""What each API version carries of the canonical records (docs/schema.md, "(not carried)").

Stated once for the tests, independently of the code: the normalizer's golden tests, the store's
builders and the reliability suite's oracle all read it.
"""

from __future__ import annotations

from typing import Final

#: The CVM fields 2025-10-28 does not carry (sorted): UNKNOWN in its records, never None.
LEGACY_UNKNOWN_CVM_FIELDS: Final = frozenset(
    {
        "api_deleted_at",
        "compose_hash",
        "compute_billing_price",
        "created_at",
        "creator_id",
        "cvm_id",
        "gateway_enabled",
        "gpus",
        "hourly_rate_compute",
        "hourly_rate_disk",
        "hourly_rate_total",
        "instance_type",
        "kms_type",
        "os_image_hash",
        "os_is_dev",
        "os_name",
        "os_version",
        "public_logs",
        "public_sysinfo",
        "public_tcbinfo",
        "secure_time",
        "storage_fs",
        "workspace_id",
    }
)
#: The node fields 2025-10-28 carries besides the key (the rest are UNKNOWN).
LEGACY_NODE_CARRIED: Final = frozenset({"name", "region"})
#: The app fields only 2025-10-28 carries, and only for a full app.
TEAM_FIELDS: Final = frozenset({"team_slug", "team_name"})
