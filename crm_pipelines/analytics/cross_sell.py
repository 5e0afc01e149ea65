"""marts.cross_sell_recommendations: the complementary categories (or products) a customer has not bought yet.

Baskets are **customers**, not orders: a basket is everything a customer has purchased (completed, not
refunded) up to ``as_of``. Complements are often bought in separate orders (the tent now, the sleeping
bag next month), which order baskets would miss.

For a rule A -> B over N baskets: support = baskets with A and B / N, confidence = baskets with A and B /
baskets with A, lift = confidence / (baskets with B / N). Rules below ``min_support`` or with lift at or
below ``min_lift`` (no positive association) are ignored. A customer's candidates are the B they have
not bought, each scored by its best rule from something they have bought; candidates rank by lift, then
confidence, then support, then name, so equal inputs give equal output. Customers whose basket
triggers no rule get no row.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crm_pipelines.analytics.activity import as_of_timestamp, purchased_items, sorted_unique

Level = Literal["category", "product"]
# Candidate rows expanded at once (about 40 bytes each): bounds memory on big catalogues.
_CHUNK_ROWS = 5_000_000
_BASKET_BITS = 62
"""Items up to which a basket is held as the bits of one int64 (:attr:`_Baskets.bits`)."""
RECOMMENDATION_COLUMNS = (
    "customer_id", "rank", "level", "recommendation", "recommendation_name", "based_on",
    "lift", "confidence", "support",
)  # fmt: skip


class _Baskets:
    """Distinct (customer, item) pairs as sorted integer codes, with the names behind the codes."""

    def __init__(self, order_items: pd.DataFrame, orders: pd.DataFrame, level: Level, as_of: pd.Timestamp | None):
        if level not in ("category", "product"):
            raise ValueError(f"level must be 'category' or 'product', got {level!r}")
        ids = pd.unique(order_items["customer_id"].dropna().astype("str"))
        self.customers = pd.Index(ids, dtype="str", name="customer_id").sort_values()
        bound = as_of_timestamp(as_of) if as_of is not None else pd.Timestamp.max.tz_localize("UTC")
        items = purchased_items(order_items, orders, self.customers, bound)
        column = "category" if level == "category" else "product_id"
        self._pair(items["code"].to_numpy(), items[column])
        if level == "product":
            named = items.loc[items["product_name"].notna(), ["product_id", "product_name"]]
            first_name = named.sort_values(["product_id", "product_name"]).drop_duplicates("product_id")
            lookup = first_name.set_index("product_id")["product_name"]
            self.display = np.asarray(lookup.reindex(self.names).fillna(pd.Series(self.names, index=self.names)))

    def _pair(self, code: np.ndarray, values: pd.Series) -> None:
        """Distinct (customer code, item) pairs of the non-empty ``values``."""
        present = (values.notna() & (values != "")).to_numpy()
        item_code, names = pd.factorize(values[present], sort=True)
        self.names = np.asarray(names, dtype=object)
        self.width = max(len(self.names), 1)
        self.keys = sorted_unique(code[present] * self.width + item_code)
        self.code, self.item = self.keys // self.width, self.keys % self.width
        self.display = self.names
        # With few items, each customer's basket as the bits of its items (distinct bits: their sum is
        # their union), so whether she bought an item is one look-up instead of a binary search.
        self.bits = None
        if self.width <= _BASKET_BITS:
            self.bits = np.zeros(len(self.customers), dtype="int64")
            starts = np.flatnonzero(np.r_[True, self.code[1:] != self.code[:-1]]) if len(self.code) else self.code
            if len(starts):
                self.bits[self.code[starts]] = np.add.reduceat(np.left_shift(1, self.item), starts)

    @classmethod
    def from_category_facts(cls, category_facts: pd.DataFrame) -> _Baskets:
        """Baskets from core.customer_category_facts: one row per customer and category bought."""
        baskets = cls.__new__(cls)
        # Codes into the sorted distinct ids, in one pass over the ids.
        code, customers = pd.factorize(category_facts["customer_id"].astype("str"), sort=True)
        baskets.customers = pd.Index(customers, dtype="str", name="customer_id")
        baskets._pair(code, category_facts["category"].astype("str"))
        return baskets


def _rules(baskets: _Baskets, min_support: float, min_lift: float) -> pd.DataFrame:
    """Rules strongest first: lift, confidence, support descending, then consequent and antecedent names."""
    n_baskets = len(sorted_unique(baskets.code))
    if n_baskets == 0 or len(baskets.names) < 2:
        empty = np.empty(0, dtype="int64")
        return _rules_from_counts(baskets.names, empty, empty, empty, empty, 0, min_support, min_lift)
    shape = (int(baskets.code.max()) + 1, len(baskets.names))
    matrix = sp.csr_matrix((np.ones(len(baskets.code), dtype="int32"), (baskets.code, baskets.item)), shape=shape)
    both = (matrix.T @ matrix).tocoo()
    with_item = np.bincount(baskets.item, minlength=len(baskets.names))
    return _rules_from_counts(baskets.names, both.row, both.col, both.data, with_item, n_baskets, min_support, min_lift)


def rules_from_pair_counts(
    names: np.ndarray, pair_counts: pd.DataFrame, n_baskets: int, min_support: float, min_lift: float
) -> pd.DataFrame:
    """:func:`_rules` from co-purchase counts computed elsewhere (the warehouse): ``pair_counts`` holds
    antecedent, consequent and customers (baskets with both; a category paired with itself counts the
    baskets holding it), with the categories among ``names`` (sorted)."""
    a = np.searchsorted(names, pair_counts["antecedent"].astype("str").to_numpy(dtype=object))
    b = np.searchsorted(names, pair_counts["consequent"].astype("str").to_numpy(dtype=object))
    count = pair_counts["customers"].to_numpy(dtype="int64")
    same = a == b
    with_item = np.zeros(len(names), dtype="int64")
    with_item[a[same]] = count[same]
    return _rules_from_counts(names, a, b, count, with_item, n_baskets, min_support, min_lift)


def _rules_from_counts(
    names: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    count: np.ndarray,
    with_item: np.ndarray,
    n_baskets: int,
    min_support: float,
    min_lift: float,
) -> pd.DataFrame:
    a, b, count = a.astype("int64"), b.astype("int64"), count.astype("float64")
    with_item = with_item.astype("float64")
    if n_baskets == 0 or len(names) < 2:
        a = b = np.empty(0, dtype="int64")
        count = confidence = lift = np.empty(0, dtype="float64")
    else:
        keep = (a != b) & (count / n_baskets >= min_support)
        a, b, count = a[keep], b[keep], count[keep]
        confidence = count / with_item[a]
        lift = confidence / (with_item[b] / n_baskets)
        keep = lift > min_lift
        a, b, count, confidence, lift = a[keep], b[keep], count[keep], confidence[keep], lift[keep]
    support = count / max(n_baskets, 1)
    order = np.lexsort((a, b, -support, -confidence, -lift))
    return pd.DataFrame(
        {
            "antecedent": pd.array(names[a[order]], dtype="str"),
            "consequent": pd.array(names[b[order]], dtype="str"),
            "baskets_with_both": count[order].astype("int64"),
            "support": support[order],
            "confidence": confidence[order],
            "lift": lift[order],
            "antecedent_code": a[order],
            "consequent_code": b[order],
        }
    )


def association_rules(
    order_items: pd.DataFrame,
    orders: pd.DataFrame,
    level: Level = "category",
    min_support: float = 0.01,
    min_lift: float = 1.0,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Pairwise rules A -> B over customer baskets (see module docstring), strongest first.

    Columns: antecedent, consequent, baskets_with_both, support, confidence, lift.
    """
    rules = _rules(_Baskets(order_items, orders, level, as_of), min_support, min_lift)
    return rules.drop(columns=["antecedent_code", "consequent_code"])


def cross_sell_recommendations(
    order_items: pd.DataFrame,
    orders: pd.DataFrame,
    top_n: int = 3,
    level: Level = "category",
    min_support: float = 0.01,
    min_lift: float = 1.0,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Top ``top_n`` not-yet-bought categories (or products) per customer, ranked by lift.

    Columns: customer_id, rank (1 = best), level, recommendation, recommendation_name (the product name
    at product level), based_on (the bought item whose rule scored it), lift, confidence, support.
    """
    return _recommend(_Baskets(order_items, orders, level, as_of), level, top_n, min_support, min_lift)


def recommendations_from_facts(
    category_facts: pd.DataFrame,
    top_n: int = 3,
    min_support: float = 0.01,
    min_lift: float = 1.0,
    pair_counts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`cross_sell_recommendations` at category level from core.customer_category_facts (one row
    per customer and category bought, built in the warehouse), never the order lines. With
    ``pair_counts`` (:func:`crm_pipelines.facts.cross_sell.category_pairs_select`: customers per pair of
    categories, counted in the warehouse) the rules come from those counts."""
    baskets = _Baskets.from_category_facts(category_facts)
    rules = None
    if pair_counts is not None:
        rules = rules_from_pair_counts(
            baskets.names, pair_counts, len(sorted_unique(baskets.code)), min_support, min_lift
        )
    return _recommend(baskets, "category", top_n, min_support, min_lift, rules)


def _recommend(
    baskets: _Baskets, level: Level, top_n: int, min_support: float, min_lift: float, rules: pd.DataFrame | None = None
) -> pd.DataFrame:
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    rules = _rules(baskets, min_support, min_lift) if rules is None else rules
    # Rules are in global strength order, so a rule's row number is its rank: lower is stronger.
    rule_by_slot = np.argsort(rules["antecedent_code"].to_numpy(), kind="stable")
    per_item = np.bincount(rules["antecedent_code"].to_numpy(), minlength=baskets.width)
    first_rule = np.concatenate([[0], np.cumsum(per_item)[:-1]])
    # A customer with s items needs at most top_n + s rules of each item's (strongest-first) list: at
    # most s - 1 of them are already bought, so the rest hold every candidate that can reach the top.
    basket_size = np.bincount(baskets.code, minlength=len(baskets.customers))
    rows_per_pair = np.minimum(per_item[baskets.item], top_n + basket_size[baskets.code])
    consequent_of_rule = rules["consequent_code"].to_numpy()
    chosen = [
        _top_candidates(baskets, slice(start, stop), rows_per_pair, first_rule, rule_by_slot, consequent_of_rule, top_n)
        for start, stop in _chunks(baskets.code, rows_per_pair)
    ]
    code = np.concatenate([c[0] for c in chosen]) if chosen else np.empty(0, "int64")
    rule = np.concatenate([c[1] for c in chosen]) if chosen else np.empty(0, "int64")
    rank = np.concatenate([c[2] for c in chosen]) if chosen else np.empty(0, "int64")
    b = rules["consequent_code"].to_numpy()[rule]
    # The text columns are taken in Arrow from the ids and names by code: no Python string per row.
    return pd.DataFrame(
        {
            "customer_id": pd.array(baskets.customers.array, dtype="str").take(code),
            "rank": rank + 1,
            "level": pd.array([level], dtype="str").take(np.zeros(len(code), dtype="int64")),
            "recommendation": pd.array(baskets.names, dtype="str").take(b),
            "recommendation_name": pd.array(baskets.display, dtype="str").take(b),
            "based_on": rules["antecedent"].array[rule],
            "lift": rules["lift"].to_numpy()[rule],
            "confidence": rules["confidence"].to_numpy()[rule],
            "support": rules["support"].to_numpy()[rule],
        }
    )


def _chunks(code: np.ndarray, rows_per_pair: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) ranges of the customer-sorted pairs, each expanding to about ``_CHUNK_ROWS`` rows at
    most, never splitting a customer."""
    if len(code) == 0:
        return []
    rows_before = np.concatenate([[0], np.cumsum(rows_per_pair)])
    customer_starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    bounds, chunk_first_row = [0], 0
    for start in customer_starts[1:]:
        if rows_before[start] - chunk_first_row > _CHUNK_ROWS:
            bounds.append(int(start))
            chunk_first_row = rows_before[start]
    bounds.append(len(code))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _top_candidates(
    baskets: _Baskets,
    pairs: slice,
    rows_per_pair: np.ndarray,
    first_rule: np.ndarray,
    rule_by_slot: np.ndarray,
    consequent_of_rule: np.ndarray,
    top_n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer code, rule, rank from 0) of the best ``top_n`` candidates of the customers in ``pairs``."""
    code, item, rows = baskets.code[pairs], baskets.item[pairs], rows_per_pair[pairs]
    # Ragged expansion: pair i takes slots first_rule[item[i]] .. first_rule[item[i]] + rows[i] - 1.
    starts = np.cumsum(rows) - rows
    slot = np.repeat(first_rule[item] - starts, rows) + np.arange(int(rows.sum()))
    rule = rule_by_slot[slot]
    cand_code = np.repeat(code, rows)
    consequent = consequent_of_rule[rule]
    wanted = cand_code * baskets.width + consequent
    if baskets.bits is not None:
        fresh = (np.right_shift(baskets.bits[cand_code], consequent) & 1) == 0
    else:
        position = np.minimum(np.searchsorted(baskets.keys, wanted), len(baskets.keys) - 1)
        fresh = baskets.keys[position] != wanted
    # Strongest rule per (customer, candidate); then each customer's strongest candidates. Each order is
    # one sort of an integer key holding both columns (the slower column times the rules, plus the rule),
    # with the columns read back from it: the order of np.lexsort on the pair, without its two indirect
    # passes. The keys stay far below 2**63: customers x items x rules.
    n_rules = max(len(consequent_of_rule), 1)
    by_candidate = np.sort(wanted[fresh] * n_rules + rule[fresh])
    wanted = by_candidate // n_rules
    first = np.r_[True, wanted[1:] != wanted[:-1]]
    by_customer = np.sort((wanted[first] // baskets.width) * n_rules + by_candidate[first] % n_rules)
    cand_code, rule = by_customer // n_rules, by_customer % n_rules
    group_start = np.flatnonzero(np.r_[True, cand_code[1:] != cand_code[:-1]])
    rank = np.arange(len(cand_code)) - np.repeat(group_start, np.diff(np.r_[group_start, len(cand_code)]))
    keep = rank < top_n
    return cand_code[keep], rule[keep], rank[keep]
