"""SQLAlchemy tables of phala-sync (the public SQL contract is described in docs/schema.md)."""

from models.base import Base, UTCDateTime, table_of
from models.entities import (
    App,
    AppCvm,
    AppHistory,
    Creator,
    CreatorHistory,
    Cvm,
    CvmHistory,
    Node,
    NodeHistory,
    TargetMembership,
    Workspace,
    WorkspaceHistory,
)
from models.fleet import FleetLevel
from models.runs import ChangeEvent, QuarantinedItem, StagedRecord, SyncRun

__all__ = [
    "App",
    "AppCvm",
    "AppHistory",
    "Base",
    "ChangeEvent",
    "Creator",
    "CreatorHistory",
    "Cvm",
    "CvmHistory",
    "FleetLevel",
    "Node",
    "NodeHistory",
    "QuarantinedItem",
    "StagedRecord",
    "SyncRun",
    "TargetMembership",
    "UTCDateTime",
    "Workspace",
    "WorkspaceHistory",
    "table_of",
]
