"""Synthetic core-layer tables with realistic skew, for the marts' benchmarks and the facts tests.

Heavy and light buyers (gamma-Poisson order counts between signup and a dropout time), personas with
favourite categories, tickets, campaign events, consent and survey answers. Shaped like the core
tables (``core.unified_customers``, ``core.orders``, ...), so they can be written to a warehouse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AS_OF = pd.Timestamp("2025-06-30 23:59:59.999999", tz="UTC")
HISTORY_DAYS = 3 * 365
CATEGORIES = np.array(
    ["Shoes", "Bags", "Jackets", "Shirts", "Trousers", "Socks", "Belts", "Hats", "Scarves", "Gloves",
     "Watches", "Jewellery", "Sunglasses", "Wallets", "Umbrellas", "Luggage", "Sportswear", "Swimwear",
     "Knitwear", "Care products"], dtype=object,
)  # fmt: skip
PERSONAS = 6


def _ids(prefix: str, n: int) -> pd.Series:
    return prefix + pd.Series(np.arange(n)).astype("str").str.zfill(7)


def _timestamps(micros: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(micros.astype("int64").view("datetime64[us]")).tz_localize("UTC"))


def synthetic_core(n_customers: int = 100_000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Core-layer frames with realistic skew: heavy and light buyers, personas with favourite categories."""
    rng = np.random.default_rng(seed)
    end = AS_OF.as_unit("us").asm8.view("int64")
    day = 86_400_000_000
    start = end - HISTORY_DAYS * day
    customer_id = _ids("cust-", n_customers)
    created = rng.integers(start, end - 30 * day, n_customers)
    born = rng.integers(-50 * 365, 7 * 365, n_customers).astype("datetime64[D]").astype("datetime64[us]")
    customers = pd.DataFrame(
        {
            "customer_id": customer_id,
            "first_name": "Name",
            "email": "c" + customer_id + "@example.com",
            "date_of_birth": pd.Series(born).where(rng.random(n_customers) < 0.9),
            "country": rng.choice(np.array(["DE", "FR", "NL", "AT", "US", "GB"], dtype=object), n_customers),
            "created_at": _timestamps(created),
            "record_count": 1,
            "sources": "shop,crm",
        }
    )

    # Orders: gamma-Poisson counts (mean about 10) spread between signup and a dropout time.
    rate = rng.gamma(1.2, 10 / 1.2, n_customers)
    counts = rng.poisson(rate)
    owner = np.repeat(np.arange(n_customers), counts)
    dropout = np.minimum(created + rng.exponential(2.0 * 365 * day, n_customers).astype("int64"), end)
    ordered = created[owner] + (rng.random(len(owner)) * (dropout[owner] - created[owner])).astype("int64")
    status = rng.choice(
        np.array(["completed", "cancelled", "refunded", "pending", "other"], dtype=object),
        len(owner),
        p=[0.88, 0.05, 0.04, 0.02, 0.01],
    )
    amount = np.round(rng.lognormal(4.0, 0.6, len(owner)), 2)
    order_id = _ids("o-", len(owner))
    orders = pd.DataFrame(
        {
            "customer_id": customer_id.to_numpy()[owner],
            "source": "shop",
            "order_id": order_id,
            "ordered_at": _timestamps(ordered),
            "status": status,
            "currency": "EUR",
            "total_amount": amount,
            "total_amount_reporting": amount,
            "is_refund": status == "refunded",
        }
    ).astype({"customer_id": "str", "status": "str"})

    # Order lines: 1 + Poisson(1.5) per order, category drawn from the customer's persona.
    lines = 1 + rng.poisson(1.5, len(owner))
    line_order = np.repeat(np.arange(len(owner)), lines)
    persona = rng.integers(0, PERSONAS, n_customers)
    taste = rng.dirichlet(np.full(len(CATEGORIES), 0.3), PERSONAS).cumsum(axis=1)
    line_persona = persona[owner[line_order]]
    category = np.minimum((rng.random(len(line_order))[:, None] > taste[line_persona]).sum(axis=1), 19)
    product = category * 100 + rng.integers(0, 100, len(line_order))
    product_id = "p-" + pd.Series(product).astype("str").str.zfill(4)
    order_items = pd.DataFrame(
        {
            "customer_id": orders["customer_id"].to_numpy()[line_order],
            "source": "shop",
            "item_id": _ids("i-", len(line_order)),
            "order_id": order_id.to_numpy()[line_order],
            "product_id": product_id,
            "product_name": "Product " + product_id,
            "category": CATEGORIES[category],
            "quantity": 1,
            "unit_price": 20.0,
            "ordered_at": orders["ordered_at"].to_numpy()[line_order],
        }
    ).astype({"customer_id": "str", "order_id": "str", "category": "str"})

    n_tickets = 3 * n_customers
    who = rng.integers(0, n_customers, n_tickets)
    opened = rng.integers(start, end, n_tickets)
    responded = opened + rng.exponential(6 * 3_600_000_000, n_tickets).astype("int64")
    resolved = responded + rng.exponential(48 * 3_600_000_000, n_tickets).astype("int64")
    tickets = pd.DataFrame(
        {
            "customer_id": customer_id.to_numpy()[who],
            "source": "desk",
            "ticket_id": _ids("t-", n_tickets),
            "opened_at": _timestamps(opened),
            "first_response_at": _timestamps(responded).where(rng.random(n_tickets) < 0.9),
            "resolved_at": _timestamps(resolved).where(rng.random(n_tickets) < 0.85),
            "status": "resolved",
            "satisfaction_score": pd.Series(rng.integers(1, 6, n_tickets).astype(float)).where(
                rng.random(n_tickets) < 0.4
            ),
        }
    ).astype({"customer_id": "str"})

    n_events = 20 * n_customers
    who = rng.integers(0, n_customers, n_events)
    kind = rng.choice(
        np.array(["sent", "open", "click", "unsubscribe", "bounce"], dtype=object),
        n_events,
        p=[0.6, 0.25, 0.14, 0.005, 0.005],
    )
    events = pd.DataFrame(
        {
            "customer_id": customer_id.to_numpy()[who],
            "source": "mail",
            "event_id": _ids("e-", n_events),
            "email": customers["email"].to_numpy()[who],
            "campaign_id": "camp-" + pd.Series(rng.integers(0, 150, n_events)).astype("str"),
            "event_type": kind,
            "occurred_at": _timestamps(rng.integers(start, end, n_events)),
        }
    ).astype({"customer_id": "str", "event_type": "str", "email": "str"})

    subscribed = np.flatnonzero(rng.random(n_customers) < 0.7)
    subscriptions = pd.DataFrame(
        {
            "customer_id": customer_id.to_numpy()[subscribed],
            "source": "mail",
            "subscription_id": _ids("s-", len(subscribed)),
            "email": customers["email"].to_numpy()[subscribed],
            "list_name": "newsletter",
            "consent_status": rng.choice(
                np.array(["subscribed", "unsubscribed", "pending"], dtype=object),
                len(subscribed),
                p=[0.8, 0.15, 0.05],
            ),
            "consent_at": _timestamps(created[subscribed] + day),
        }
    ).astype({"customer_id": "str", "consent_status": "str", "email": "str"})

    n_answers = n_customers // 2
    who = rng.integers(0, n_customers, n_answers)
    surveys = pd.DataFrame(
        {
            "customer_id": customer_id.to_numpy()[who],
            "source": "survey",
            "response_id": _ids("r-", n_answers),
            "nps_score": rng.choice(
                np.arange(11), n_answers, p=np.r_[np.full(7, 0.04), [0.1, 0.12, 0.25, 0.25]]
            ),
            "responded_at": _timestamps(rng.integers(start, end, n_answers)),
        }
    ).astype({"customer_id": "str"})
    return {
        "customers": customers,
        "orders": orders,
        "order_items": order_items,
        "tickets": tickets,
        "subscriptions": subscriptions,
        "events": events,
        "surveys": surveys,
    }
