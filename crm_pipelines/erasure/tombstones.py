"""``audit.erasure_tombstones``: the hashed keys of erased people, read by every ingest."""

from __future__ import annotations

from crm_pipelines.erasure.hashing import EMAIL, PHONE, KeyHashes
from crm_pipelines.schema import AUDIT, Column
from crm_pipelines.warehouse import Warehouse

TOMBSTONES_TABLE = "erasure_tombstones"
# core.suppression_list keeps an erased address as its hash, under these address kinds.
HASHED_ADDRESS_KINDS = {EMAIL: "email_sha256", PHONE: "phone_sha256"}
ERASED_REASON = "erased"
TOMBSTONE_COLUMNS = (
    Column("key_kind", "string", "email, phone, source_record (<source>:<record id>) or order (<source>:<order id>)."),
    Column("key_hash", "string", "SHA-256 (hex) of the normalized key; the key itself is never stored."),
    Column("erasure_id", "string", "The erasure that recorded it (audit.erasures)."),
    Column("recorded_at", "timestamp", "When (UTC)."),
)


def read_tombstones(wh: Warehouse) -> KeyHashes:
    """Every tombstoned key hash (empty before the first erasure)."""
    if not wh.table_exists(AUDIT, TOMBSTONES_TABLE):
        return KeyHashes()
    frame = wh.read_table(AUDIT, TOMBSTONES_TABLE, columns=["key_kind", "key_hash"])
    return KeyHashes.of(zip(frame["key_kind"].astype("str"), frame["key_hash"].astype("str"), strict=True))
