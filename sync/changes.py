"""Change tracking as pure functions: canonical bytes, content hashes, merge and diff.

A record's *known fields* (``Record.known_fields()``) leave out what the pinned API version does not
carry, so merging an observation into the stored state only ever touches fields the API reported:
a version switch is never a change. Values are compared after a JSON round trip, exactly as they
are staged and stored, so equal values always compare equal.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

_HASH_BYTES = 16

#: Bump when a model or mapper changes what it makes of the same bytes: every stored source hash
#: then differs, so the next run validates and normalizes every item again (and records nothing
#: unless a field really changed). 2: ``hourly_rate`` mapped to ``hourly_rate_*`` (the migration
#: that adds the columns fills them from the stored raw JSON, so nothing is recorded as changed).
NORMALIZATION_REVISION = 2


def dumps_fields(fields: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of a field mapping: sorted keys, datetimes as RFC 3339 in UTC."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def fields_hash(fields_json: bytes) -> str:
    """Hash of a reference record's canonical fields (:func:`dumps_fields`), as hex text.

    What ``observed_hash`` holds for nodes, workspaces and creators: they are not listed on their
    own but read from the CVMs that carry them, so they have no raw bytes of their own. Two
    sightings with equal hashes need no write at all. The listed CVMs and apps hold their
    :func:`source_hash` instead.
    """
    return hashlib.blake2b(fields_json, digest_size=_HASH_BYTES).hexdigest()


@functools.cache
def _source_salt(api_version: str) -> bytes:
    return f"{api_version}/{NORMALIZATION_REVISION}\x00".encode()


def source_digest(raw: bytes, api_version: str) -> bytes:
    """Hash of one listed item's raw JSON as received under ``api_version`` (16 bytes).

    The models and mappers are pure functions of (bytes, version, release), so an item whose source
    hash equals the stored one would validate and normalize to the stored state: it needs neither
    validation nor any write. The version and :data:`NORMALIZATION_REVISION` are part of the hash,
    so a version switch or a new release re-validates everything once (and records no change).
    """
    return hashlib.blake2b(_source_salt(api_version) + raw, digest_size=_HASH_BYTES).digest()


def source_hash(raw: bytes, api_version: str) -> str:
    """:func:`source_digest` as hex text: what ``observed_hash`` holds for listed CVMs and apps."""
    return source_digest(raw, api_version).hex()


def loads_fields(text: str | bytes, datetime_fields: Iterable[str]) -> dict[str, Any]:
    """Inverse of :func:`dumps_fields`, turning the named fields back into aware datetimes."""
    fields: dict[str, Any] = orjson.loads(text)
    for name in datetime_fields:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = datetime.fromisoformat(value)
    return fields


def diff(stored: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields of ``observed`` whose value differs from ``stored``: {field: {old, new}}.

    Values stay Python values (datetimes included): the engines' JSON serializer (orjson) writes
    them as RFC 3339 text.

    Only observed (known) fields are compared; a field absent from ``observed`` is unknown to the
    pinned version and never a change.
    """
    changes: dict[str, dict[str, Any]] = {}
    for name, new in observed.items():
        old = stored.get(name)
        if old != new:
            changes[name] = {"old": old, "new": new}
    return changes


def created_changes(observed: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The change listing of a new entity: every known field, from null to its value."""
    return {name: {"old": None, "new": value} for name, value in observed.items()}


def merge(stored: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, Any]:
    """The new state: the stored one with every observed (known) field replaced."""
    state = dict(stored)
    state.update(observed)
    return state
