"""The shop's orders and order lines.

Refunds come in two forms, as shops record them: an order whose status became 'refunded', and a
return (a credit note): a separate order with status 'refunded', a negative total and a line with a
negative quantity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from crm_pipelines.demo.arrays import DAY, HOUR, labels, pick_rows, timestamp_strings, weighted_index
from crm_pipelines.demo.catalogue import Catalogue, fill_baskets
from crm_pipelines.demo.population import People
from crm_pipelines.demo.settings import Messiness, malformed_count
from crm_pipelines.demo.shop import ShopAccounts
from crm_pipelines.demo.vocab import COUNTRIES, CURRENCY_OF_COUNTRY

STATUSES = ("completed", "cancelled", "refunded", "pending")
COMPLETED, CANCELLED, REFUNDED, PENDING = range(4)
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "XYZ")  # XYZ: the unknown code a few broken orders carry
FIRST_ORDER_ID = 100_001
RETURN_RATE = 0.012


@dataclass
class ShopOrders:
    """What later sources need to know about each order (row order = order id order)."""

    order_id: np.ndarray
    account: np.ndarray
    """Account position (row in the customers table) of each order."""
    person: np.ndarray
    created: np.ndarray
    status: np.ndarray
    is_return: np.ndarray


def shop_orders(
    rng: np.random.Generator,
    catalogue: Catalogue,
    people: People,
    accounts: ShopAccounts,
    account: np.ndarray,
    time: np.ndarray,
    end_ts: int,
    messiness: Messiness,
) -> tuple[dict[str, pa.Table], ShopOrders]:
    """The ``orders`` and ``order_items`` tables for purchases (account position and time of each), with
    baskets, returns and a few broken rows; and the facts about each order that later sources use."""
    by_time = np.argsort(time, kind="stable")
    account, time = account[by_time], time[by_time]
    count = len(time)
    person = accounts.person[account]
    home_currency = np.array([CURRENCIES.index(CURRENCY_OF_COUNTRY[c]) for c in COUNTRIES])[
        people.country[person]
    ]
    currency = np.where(rng.random(count) < 0.02, rng.integers(0, 4, count), home_currency).astype(np.int8)
    status = weighted_index(rng, (0.93, 0.04, 0.03), count).astype(np.int8)
    status[(end_ts - time < 2 * DAY) & (rng.random(count) < 0.6)] = PENDING

    baskets = fill_baskets(rng, catalogue, people.interest[person])
    prices = np.stack([catalogue.price_in(c) for c in CURRENCIES])
    unit_price = prices[currency[baskets.order], baskets.product]
    discounted = np.flatnonzero(rng.random(len(unit_price)) < 0.08)
    unit_price[discounted] = np.round(
        unit_price[discounted] * rng.choice([0.8, 0.85, 0.9], len(discounted)), 2
    )

    # Returns: a credit note some days after a completed order, for its first line.
    returned = pick_rows(rng, count, RETURN_RATE)
    returned = returned[status[returned] == COMPLETED]
    return_time = time[returned] + rng.uniform(3, 30, len(returned)).astype(np.int64) * DAY
    returned, return_time = returned[return_time < end_ts], return_time[return_time < end_ts]
    by_return_time = np.argsort(return_time, kind="stable")
    returned, return_time = returned[by_return_time], return_time[by_return_time]
    first_line = np.searchsorted(baskets.order, returned)

    # Order ids follow creation time, as an auto-increment key does: merge the two time-sorted lists.
    order_at = np.arange(count) + np.searchsorted(return_time, time, side="left")
    return_at = np.arange(len(returned)) + np.searchsorted(time, return_time, side="right")
    n_orders = count + len(returned)
    all_time = _merged(n_orders, order_at, time, return_at, return_time)
    all_account = _merged(n_orders, order_at, account, return_at, account[returned])
    all_currency = _merged(n_orders, order_at, currency, return_at, currency[returned])
    all_status = _merged(n_orders, order_at, status, return_at, np.full(len(returned), REFUNDED, np.int8))
    is_return = _merged(n_orders, order_at, np.zeros(count, bool), return_at, np.ones(len(returned), bool))

    line_order_at = order_at[baskets.order]
    line_at = np.arange(len(line_order_at)) + np.searchsorted(return_at, line_order_at, side="left")
    return_line_at = np.arange(len(returned)) + np.searchsorted(line_order_at, return_at, side="left")
    n_lines = len(line_at) + len(returned)
    line_order = _merged(n_lines, line_at, line_order_at, return_line_at, return_at)
    product = _merged(n_lines, line_at, baskets.product, return_line_at, baskets.product[first_line])
    quantity = _merged(n_lines, line_at, baskets.quantity, return_line_at, -baskets.quantity[first_line])
    unit_price = _merged(n_lines, line_at, unit_price, return_line_at, unit_price[first_line])

    total = np.round(np.bincount(line_order, weights=quantity * unit_price, minlength=n_orders), 2)
    updated = _updated_at(rng, all_time, all_status, is_return, end_ts)
    order_id = FIRST_ORDER_ID + np.arange(n_orders, dtype=np.int64)
    created = _break_orders(rng, all_time, all_currency, all_status, total, end_ts, messiness)

    orders = pa.table(
        {
            "id": pa.array(order_id),
            "customer_id": pa.array(accounts.account_id[all_account]),
            "created_at": timestamp_strings(created),
            "status": labels(STATUSES, all_status),
            "currency": labels(CURRENCIES, all_currency),
            "total": pa.array(total),
            "updated_at": timestamp_strings(updated),
        }
    )
    items = pa.table(
        {
            "id": pa.array(np.arange(1, n_lines + 1, dtype=np.int64)),
            "order_id": pa.array(order_id[line_order]),
            "sku": labels(catalogue.sku, product),
            "product_name": labels(catalogue.name, product),
            "category": labels(catalogue.category_name, catalogue.category[product]),
            "qty": pa.array(quantity.astype(np.int64)),
            "unit_price": pa.array(unit_price),
        }
    )
    facts = ShopOrders(order_id, all_account, accounts.person[all_account], all_time, all_status, is_return)
    return {"orders": orders, "order_items": items}, facts


def _merged(
    size: int, at: np.ndarray, values: np.ndarray, other_at: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """Interleave two arrays into one of ``size`` rows by their target positions."""
    merged = np.empty(size, dtype=np.result_type(values, other))
    merged[at] = values
    merged[other_at] = other
    return merged


def _updated_at(
    rng: np.random.Generator, created: np.ndarray, status: np.ndarray, is_return: np.ndarray, end_ts: int
) -> np.ndarray:
    """Shipping confirms an order within days; refunds land weeks later; cancellations within hours."""
    size = len(created)
    delay = np.select(
        [is_return, status == COMPLETED, status == CANCELLED, status == REFUNDED],
        [
            rng.uniform(0, 1, size) * DAY,
            rng.uniform(0.5, 4, size) * DAY,
            rng.uniform(0.2, 24, size) * HOUR,
            rng.uniform(5, 40, size) * DAY,
        ],
        default=0,
    ).astype(np.int64)
    return np.minimum(created + delay, end_ts)


def _break_orders(
    rng: np.random.Generator,
    created: np.ndarray,
    currency: np.ndarray,
    status: np.ndarray,
    total: np.ndarray,
    end_ts: int,
    messiness: Messiness,
) -> np.ndarray:
    """An unknown currency, negative totals on completed orders, orders dated in the future."""
    n = malformed_count(messiness.malformed, len(created))
    completed = np.flatnonzero((status == COMPLETED) & (total > 0))
    unknown_currency = rng.choice(len(created), n, replace=False)
    currency[unknown_currency] = CURRENCIES.index("XYZ")
    negative = rng.choice(completed, min(n, len(completed)), replace=False)
    total[negative] = -total[negative]
    future = rng.choice(len(created), n, replace=False)
    created = created.copy()
    created[future] = end_ts + rng.integers(1, 60, n) * DAY
    return created
