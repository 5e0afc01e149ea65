"""Knobs of the demo data: how messy each source is, and who appears in which system."""

from __future__ import annotations

from dataclasses import dataclass

# Source names: they must match crm.yaml, because ground truth and staging key records by them.
CRM, SHOP, SUPPORT, EMAIL, SURVEYS = "crm", "shop", "support", "email", "surveys"

CRM_CONTACTS_FILE = "crm_contacts.csv"
CRM_CONSENTS_FILE = "crm_consents.csv"
SHOP_DATABASE_FILE = "shop.sqlite"
SUPPORT_TICKETS_FILE = "support_tickets.jsonl"
EMAIL_SUBSCRIBERS_FILE = "email_subscribers.csv"
EMAIL_EVENTS_FILE = "email_events.csv"
SURVEY_RESPONSES_FILE = "survey_responses.csv"
GROUND_TRUTH_FILE = "ground_truth.csv"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Coverage:
    """Which share of people each system knows."""

    shop: float = 0.85
    """People with a shop account."""
    crm_of_shop_customers: float = 0.55
    """Shop customers the CRM also knows (everyone without a shop account is in the CRM)."""
    shop_accounts_without_orders: float = 0.08
    pre_window_customers: float = 0.10
    """Customers acquired before the generated window (up to two years earlier)."""
    loyalty_card_in_crm: float = 0.85
    loyalty_card_in_shop: float = 0.80
    subscribers: float = 0.50
    survey_respondents: float = 0.12


@dataclass(frozen=True)
class Messiness:
    """How often each kind of mess appears. Rates are shares of the records a source holds."""

    email_case: float = 0.08
    """Emails typed with capitals (Anna.Mueller@Web.de, ANNA@...)."""
    email_whitespace: float = 0.03
    """Emails with spaces around them."""
    name_typo: float = 0.03
    """Names with one edit (Schmidt -> Schmdit) in the shop and the CRM's duplicates."""
    nickname: float = 0.15
    """Of the first names that have a short form (Alexander -> Alex), in the shop."""
    crm_duplicates: float = 0.03
    """CRM contacts entered twice, with variations."""
    shop_duplicates: float = 0.01
    """Shop customers with a second account (another email)."""
    moved_address: float = 0.08
    """Shop customers whose shop account still shows the address they moved away from."""
    family_email: float = 0.25
    """Households of two or more where the first two members share one email address."""
    unknown_reference_email: float = 0.01
    """Email-only references (support requesters, subscribers, survey respondents) from a mailbox none of
    the person's CRM contacts or shop accounts carries; the others use an address one of them carries."""
    family_reference_email: float = 0.01
    """Email-only references from a shared family address: the sender cannot be told from the partner,
    so the ground truth gives them to the address's owner."""
    shared_landline: float = 0.35
    """Members of multi-person households who give the household landline rather than their mobile."""
    missing_email_crm: float = 0.05
    missing_phone: float = 0.15
    missing_birth_date: float = 0.45
    missing_address: float = 0.04
    name_swap: float = 0.02
    """Given name and surname entered the wrong way round (Schulze, Katharina), in the shop and the CRM."""
    given_name_dropped: float = 0.02
    """Given name left empty, in the shop and the CRM."""
    ocr_typo: float = 0.02
    """Surnames in the CRM misread from paper forms: one letter group (Schmidt -> Schrnidt, m/rn, d/cl,
    h/li, e/c, l/i); a surname with nothing to misread stays as it is."""
    birth_date_digit: float = 0.03
    """CRM birth dates with one digit wrong (1985-03-14 -> 1985-03-19), still a valid date."""
    birth_day_month_swap: float = 0.05
    """Of the CRM birth dates whose day could be a month (a 12th or earlier, not the month itself), the
    share with day and month swapped (1985-03-12 -> 1985-12-03)."""
    missing_street: float = 0.03
    """Street left empty while the rest of the address is there, in the shop and the CRM."""
    missing_city: float = 0.03
    """City left empty while the rest of the address is there, in the shop and the CRM."""
    postcode_digit: float = 0.02
    """Postcodes with one digit one off (50667 -> 50668; never the first), in the shop and the CRM."""
    abbreviated_street: float = 0.25
    """German street names written short in the shop (Hauptstr. 5 for Hauptstraße 5)."""
    malformed: float = 0.00025
    """Each kind of broken value (invalid email, phone "12", birth year 1850, unknown currency,
    negative total on a completed order, future timestamp); at least one of each."""
    junk: float = 0.0005
    """Placeholder values (test@test.com, n/a, 0000000000); at least two of each."""


def malformed_count(rate: float, rows: int) -> int:
    return min(rows, max(1, round(rate * rows)))
