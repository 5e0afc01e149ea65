"""``pii:`` in crm.yaml: what the marts BI reads keep of each class of personal data.

Kept apart from :mod:`crm_pipelines.analytics.pii` so that loading the configuration imports neither
pandas nor phonenumbers. Which mart column belongs to which class is declared once, in
:data:`crm_pipelines.analytics.mart_columns.PII_COLUMNS`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PiiClass = Literal["name", "email", "phone", "birth_date", "address"]
PiiMode = Literal["keep", "mask", "hash", "drop"]
PII_CLASSES: tuple[PiiClass, ...] = ("name", "email", "phone", "birth_date", "address")

_MODE = "keep (as today), mask (partly shown), hash (SHA-256 of the normalized value, column <col>_sha256) or drop."


class PiiModes(BaseModel):
    """One mode per class of personal data; a class left out keeps the enclosing default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PiiMode | None = Field(None, description=f"first_name, last_name: {_MODE}")
    email: PiiMode | None = Field(None, description=f"email: {_MODE}")
    phone: PiiMode | None = Field(None, description=f"phone: {_MODE}")
    birth_date: PiiMode | None = Field(None, description=f"date_of_birth: {_MODE}")
    address: PiiMode | None = Field(None, description=f"address_line1, address_line2, postcode: {_MODE}")


class PiiSettings(PiiModes):
    """``pii:`` in crm.yaml, for example::

        pii:
          name: mask
          email: hash
          phone: drop
          birth_date: mask
          address: drop
          marts:
            marketing_audiences: {email: keep}   # the email tool sends to the address

    Every class defaults to ``keep``: the marts show what they showed before the setting existed.
    ``marts`` overrides classes for one mart (a mart's name as in docs/marts.md).
    """

    marts: dict[str, PiiModes] = Field(default_factory=dict, description="Per-mart overrides of the classes.")

    def mode(self, table: str, pii_class: PiiClass) -> PiiMode:
        """The mode of ``pii_class`` in ``marts.<table>``: the mart's override, else the class's, else keep."""
        override = self.marts.get(table)
        if override is not None and getattr(override, pii_class) is not None:
            return getattr(override, pii_class)
        return getattr(self, pii_class) or "keep"

    @property
    def keeps_everything(self) -> bool:
        modes = [getattr(m, c) for m in (self, *self.marts.values()) for c in PII_CLASSES]
        return all(m in (None, "keep") for m in modes)
