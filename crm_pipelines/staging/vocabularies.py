"""The words sources use for the same thing, mapped onto the canonical values staging publishes.

Keys are looked up after :func:`vocabulary_key` (case-folded, trimmed, spaces and hyphens as ``_``), so
``"Opt-In"``, ``"opt in"`` and ``"OPT_IN"`` are one entry.
"""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-]+")


def vocabulary_key(value: str) -> str:
    """The lookup form of a raw value: NFC, case-folded, trimmed, inner spaces and hyphens as ``_``."""
    return _SEPARATORS.sub("_", unicodedata.normalize("NFC", value).strip().casefold())


def _invert(groups: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """``{canonical: (synonym, ...)}`` to ``{key: canonical}``; each canonical value maps to itself."""
    table: dict[str, str] = {}
    for canonical, synonyms in groups.items():
        for word in (canonical, *synonyms):
            table[vocabulary_key(word)] = canonical
    return table


# Order statuses. Anything not listed becomes "other": an order is worth keeping whatever its status.
ORDER_STATUSES = _invert(
    {
        "completed": ("complete", "paid", "shipped", "delivered", "fulfilled", "closed", "done", "success"),
        "cancelled": ("canceled", "cancel", "void", "voided", "storniert", "abgebrochen"),
        "refunded": ("refund", "returned", "return", "chargeback", "erstattet", "retour"),
        "pending": ("open", "processing", "new", "on hold", "on_hold", "awaiting payment", "offen"),
    }
)
OTHER_ORDER_STATUS = "other"

TICKET_STATUSES = _invert(
    {
        "open": ("new", "reopened", "in progress", "assigned", "offen", "neu"),
        "pending": ("on hold", "hold", "waiting", "waiting on customer", "awaiting reply", "wartend"),
        "resolved": ("solved", "done", "fixed", "gelöst", "erledigt"),
        "closed": ("archived", "geschlossen"),
    }
)

CONSENT_STATUSES = _invert(
    {
        "subscribed": (
            "granted", "opt-in", "opted in", "opted_in", "optin", "yes", "y", "true", "1",
            "active", "confirmed", "double opt-in", "ja",
        ),
        "unsubscribed": (
            "withdrawn", "revoked", "opt-out", "opted out", "opted_out", "optout", "no", "n",
            "false", "0", "inactive", "cleaned", "nein", "abgemeldet",
        ),
        "pending": ("unconfirmed", "awaiting confirmation", "double opt-in pending"),
    }
)

EVENT_TYPES = _invert(
    {
        "sent": ("send", "delivered", "delivery", "processed"),
        "open": ("opened", "opens", "view", "viewed"),
        "click": ("clicked", "clicks", "link click"),
        "unsubscribe": ("unsubscribed", "opt-out", "optout"),
        "bounce": ("bounced", "hard_bounce", "soft_bounce", "hard bounce", "soft bounce", "dropped"),
        # Enrolment in a campaign's control group: the customer was deliberately not sent the campaign.
        "holdout": ("control", "control_group", "control group", "held_out", "held out", "holdout_enrolled"),
    }
)

# Genders. A value not listed becomes "unknown" rather than a rejection: a customer is not worth
# losing over a form field.
GENDERS = _invert(
    {
        "female": ("f", "w", "woman", "women", "weiblich", "frau", "mrs", "ms", "miss", "femme", "feminin"),
        "male": ("m", "man", "men", "männlich", "maennlich", "mann", "herr", "mr", "homme", "masculin"),
        "other": ("d", "diverse", "divers", "x", "non-binary", "nonbinary", "nb", "enby", "genderqueer"),
        "unknown": ("u", "not specified", "unspecified", "prefer not to say", "keine angabe", "unbekannt"),
    }
)
UNKNOWN_GENDER = "unknown"

# Country names pycountry does not know (local names, abbreviations, common English forms).
COUNTRY_ALIASES = _invert(
    {
        "DE": ("Deutschland", "Bundesrepublik Deutschland", "BRD", "Allemagne", "Germania"),
        "AT": ("Österreich", "Oesterreich", "Osterreich", "Autriche"),
        "CH": ("Schweiz", "Suisse", "Svizzera", "Svizra", "Swiss"),
        "GB": (
            "UK", "U.K.", "United Kingdom", "Great Britain", "Britain", "England", "Scotland", "Wales",
            "Northern Ireland", "Großbritannien", "Grossbritannien", "Vereinigtes Königreich",
        ),
        "US": ("USA", "U.S.A.", "U.S.", "America", "United States of America", "Vereinigte Staaten"),
        "NL": ("Holland", "Nederland", "Niederlande", "The Netherlands"),
        "BE": ("Belgien", "België", "Belgique"),
        "FR": ("Frankreich",),
        "IT": ("Italia", "Italien"),
        "ES": ("España", "Espana", "Spanien"),
        "PT": ("Portugal",),
        "PL": ("Polska", "Polen"),
        "CZ": ("Česko", "Cesko", "Tschechien", "Czech Republic"),
        "DK": ("Danmark", "Dänemark"),
        "SE": ("Sverige", "Schweden"),
        "NO": ("Norge", "Norwegen"),
        "FI": ("Suomi", "Finnland"),
        "GR": ("EL", "Hellas", "Griechenland"),
        "LU": ("Luxemburg",),
        "IE": ("Irland", "Éire"),
        "HU": ("Magyarország", "Ungarn"),
        "RU": ("Russia", "Russland"),
        "TR": ("Turkey", "Türkei"),
        "MK": ("Macedonia",),
        "CI": ("Ivory Coast",),
        "KR": ("Korea",),
    }
)
COUNTRY_ALIASES.update(
    # International vehicle codes, common in German-speaking address data ("D-10115 Berlin").
    {"d": "DE", "a": "AT", "f": "FR", "i": "IT", "e": "ES", "b": "BE", "l": "LU", "p": "PT", "s": "SE",
     "n": "NO", "h": "HU", "fl": "LI"}
)
# Values that say "no country" rather than naming an unknown one.
COUNTRY_PLACEHOLDERS = frozenset({"unknown", "unbekannt", "xx", "zz"})
