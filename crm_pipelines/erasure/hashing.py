"""Hashed erasure keys: kinds, SHA-256 and sets of hashes (no staging imports: ingest and marts read them).

See :mod:`crm_pipelines.erasure.keys` for how a key is normalized before it is hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EMAIL = "email"
PHONE = "phone"
SOURCE_RECORD = "source_record"
ORDER = "order"
KINDS = (EMAIL, PHONE, SOURCE_RECORD, ORDER)


class ErasureKeyError(ValueError):
    """A key given for erasure cannot be used; the message names it (never the whole value) and why."""


def key_hash(value: str) -> str:
    """SHA-256 of a normalized key, as 64 lower-case hex digits."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def record_key(source: str, record_id: str) -> str:
    """``<source>:<record id>``: source names cannot hold a colon (crm.yaml), record ids may."""
    return f"{source}:{record_id}"


@dataclass(frozen=True)
class KeyHashes:
    """Hashed keys by kind: what an erasure request names, and what the tombstones remember."""

    by_kind: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> KeyHashes:
        """From (kind, hash) pairs."""
        grouped: dict[str, set[str]] = {}
        for kind, digest in pairs:
            if kind not in KINDS:
                raise ErasureKeyError(f"unknown key kind {kind!r}; known: {', '.join(KINDS)}")
            grouped.setdefault(kind, set()).add(digest)
        return cls({k: frozenset(v) for k, v in grouped.items()})

    def get(self, kind: str) -> frozenset[str]:
        return self.by_kind.get(kind, frozenset())

    def pairs(self) -> list[tuple[str, str]]:
        return sorted((kind, digest) for kind, digests in self.by_kind.items() for digest in digests)

    def union(self, other: KeyHashes) -> KeyHashes:
        return KeyHashes.of([*self.pairs(), *other.pairs()])

    def __bool__(self) -> bool:
        return any(self.by_kind.values())

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kind.values())
