"""The shop's product catalogue and how baskets are filled.

About 200 products in 12 categories. Baskets have structure, so cross-sell lift means something: a
camera comes with a lens or a memory card far more often than chance, a coffee machine with beans.
Each person leans to one interest (photo, coffee, ...) that decides what they mostly buy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crm_pipelines.demo.arrays import grouped_index
from crm_pipelines.demo.population import INTEREST_CLUSTERS

# code, name, product kinds, EUR price range, most units bought at once
_CATEGORIES = (
    ("CAM", "Cameras", "Mirrorless Camera|DSLR Camera|Compact Camera|Action Camera", (249, 2499), 1),
    (
        "LEN",
        "Lenses",
        "Prime Lens 35mm f/1.8|Zoom Lens 24-70mm|Telephoto Lens 70-300mm|Wide Angle Lens 16mm|"
        "Macro Lens 90mm",
        (149, 1499),
        1,
    ),
    (
        "MEM",
        "Memory Cards",
        "SDXC Card 64GB|SDXC Card 128GB|microSD Card 256GB|CFexpress Card 128GB|Card Reader",
        (9.99, 149),
        3,
    ),
    (
        "CMA",
        "Coffee Machines",
        "Espresso Machine|Bean-to-Cup Machine|Filter Coffee Maker|Milk Frother|Coffee Grinder",
        (59, 1299),
        1,
    ),
    (
        "BEA",
        "Coffee Beans",
        "Espresso Beans 1kg|Crema Beans 1kg|Single Origin Beans 250g|Decaf Beans 500g",
        (7.99, 34.99),
        4,
    ),
    (
        "PHO",
        "Smartphones",
        "Smartphone 128GB|Smartphone 256GB|Smartphone Pro 512GB|Foldable Smartphone",
        (199, 1299),
        1,
    ),
    (
        "PAC",
        "Phone Accessories",
        "Phone Case|Screen Protector|USB-C Charger 30W|Wireless Charger|Power Bank 10000mAh",
        (9.99, 59.99),
        2,
    ),
    (
        "LAP",
        "Laptops",
        "Ultrabook 13-inch|Notebook 15-inch|Gaming Laptop 16-inch|Convertible 14-inch",
        (499, 2499),
        1,
    ),
    (
        "CAC",
        "Computer Accessories",
        "Wireless Mouse|Mechanical Keyboard|USB-C Hub|Laptop Sleeve|27-inch Monitor|Webcam",
        (14.99, 349),
        2,
    ),
    (
        "HEA",
        "Headphones",
        "Over-Ear Headphones|True Wireless Earbuds|Noise-Cancelling Headphones|Sports Earbuds",
        (29, 399),
        1,
    ),
    (
        "KIT",
        "Kitchenware",
        "Chef's Knife|Cast Iron Pan|Cutting Board|Milk Jug|Espresso Cups, Set of 4|Descaling Tablets",
        (9.99, 149),
        2,
    ),
    ("BOO", "Books", "Photography Handbook|Coffee Atlas|Cookbook|Travel Guide|Novel", (9.99, 39.99), 2),
)
_BRANDS = ("Kestrel", "Lumora", "Nordlicht", "Orion", "Brava", "Veloce", "Halcyon", "Tessera")
PRODUCTS_PER_CATEGORY = 17

# Bought together far more often than chance: (primary category, companion category, probability).
COMPLEMENTS = (
    ("CAM", "LEN", 0.45),
    ("CAM", "MEM", 0.60),
    ("CAM", "BOO", 0.08),
    ("LEN", "MEM", 0.15),
    ("CMA", "BEA", 0.70),
    ("CMA", "KIT", 0.25),
    ("PHO", "PAC", 0.65),
    ("PHO", "HEA", 0.20),
    ("LAP", "CAC", 0.55),
    ("LAP", "HEA", 0.12),
    ("BEA", "KIT", 0.05),
)
RANDOM_EXTRA_ITEM_RATE = 0.2

# What a person with each interest picks as the main item of an order (weights over categories).
_INTEREST_LEANINGS = {
    "photo": {"CAM": 0.15, "LEN": 0.2, "MEM": 0.2, "BOO": 0.1},
    "coffee": {"CMA": 0.1, "BEA": 0.55, "KIT": 0.15, "BOO": 0.05},
    "mobile": {"PHO": 0.2, "PAC": 0.35, "HEA": 0.2},
    "computing": {"LAP": 0.15, "CAC": 0.4, "HEA": 0.15},
    "home": {"KIT": 0.4, "BOO": 0.3, "BEA": 0.1},
    "reader": {"BOO": 0.7, "KIT": 0.05},
}
_PRICE_FACTOR = {"EUR": 1.0, "CHF": 1.02, "GBP": 0.89, "USD": 1.1}


@dataclass(frozen=True)
class Catalogue:
    sku: list[str]
    name: list[str]
    category: np.ndarray
    """Category index of each product."""
    category_code: list[str]
    category_name: list[str]
    list_price_eur: np.ndarray
    max_quantity: np.ndarray
    popularity: np.ndarray
    """Relative popularity of each product within its category."""

    def price_in(self, currency: str) -> np.ndarray:
        """List prices in ``currency``, ending in .99 or .00 as shops price them."""
        raw = self.list_price_eur * _PRICE_FACTOR.get(currency, 1.0)
        return np.where(raw < 100, np.floor(raw) + 0.99, np.round(raw))

    def category_index(self, code: str) -> int:
        return self.category_code.index(code)


def build_catalogue() -> Catalogue:
    """The same catalogue for every seed, so product names and prices are stable between runs."""
    rng = np.random.default_rng(20_240_101)
    sku, name, category, price, max_qty, popularity = [], [], [], [], [], []
    for c, (code, _, kinds, (low, high), most) in enumerate(_CATEGORIES):
        kind_list = kinds.split("|")
        for i in range(PRODUCTS_PER_CATEGORY):
            brand = _BRANDS[(i * 3 + c) % len(_BRANDS)]
            kind = kind_list[i % len(kind_list)]
            series = ("", " S", " Pro", " Plus", " Mini")[i // len(kind_list) % 5]
            sku.append(f"{code}-{1001 + i}")
            name.append(f"{brand} {kind}{series}")
            category.append(c)
            price.append(float(np.exp(rng.uniform(np.log(low), np.log(high)))))
            max_qty.append(most)
            popularity.append(1.0 / (i + 1) ** 0.9)
    return Catalogue(
        sku=sku,
        name=name,
        category=np.array(category, dtype=np.int16),
        category_code=[c[0] for c in _CATEGORIES],
        category_name=[c[1] for c in _CATEGORIES],
        list_price_eur=np.array(price),
        max_quantity=np.array(max_qty),
        popularity=np.array(popularity),
    )


@dataclass(frozen=True)
class Baskets:
    """Order lines: which order (position in the order arrays) bought which product, how many."""

    order: np.ndarray
    product: np.ndarray
    quantity: np.ndarray


def fill_baskets(rng: np.random.Generator, catalogue: Catalogue, interest: np.ndarray) -> Baskets:
    """Lines for orders whose buyers have the given interests (one entry per order), grouped by order.

    Each order has slots: its main item, up to three companions of the main item's category (each with
    its own probability) and a random extra item. Laying the slots out as a matrix and keeping the
    filled cells row by row yields lines already in order, without sorting millions of rows.
    """
    n_categories = len(catalogue.category_code)
    leanings = []
    for cluster in INTEREST_CLUSTERS:
        weights = np.full(n_categories, 0.15 / n_categories)
        for code, w in _INTEREST_LEANINGS[cluster].items():
            weights[catalogue.category_index(code)] += w
        leanings.append(weights)
    main = grouped_index(rng, interest.astype(np.int64), leanings)

    companions = max(sum(1 for p, _, _ in COMPLEMENTS if p == code) for code in catalogue.category_code)
    companion_category = np.zeros((n_categories, companions), dtype=np.int16)
    companion_probability = np.zeros((n_categories, companions))
    for primary in range(n_categories):
        edges = [(c, p) for code, c, p in COMPLEMENTS if catalogue.category_index(code) == primary]
        for k, (code, probability) in enumerate(edges):
            companion_category[primary, k] = catalogue.category_index(code)
            companion_probability[primary, k] = probability

    size = len(main)
    slots = 2 + companions
    category = np.empty((size, slots), dtype=np.int16)
    filled = np.empty((size, slots), dtype=bool)
    category[:, 0], filled[:, 0] = main, True
    category[:, 1:-1] = companion_category[main]
    filled[:, 1:-1] = rng.random((size, companions)) < companion_probability[main]
    category[:, -1] = rng.integers(0, n_categories, size)
    filled[:, -1] = rng.random(size) < RANDOM_EXTRA_ITEM_RATE

    per_category = [catalogue.popularity[catalogue.category == c] for c in range(n_categories)]
    product = np.full((size, slots), -1, dtype=np.int32)
    chosen = category[filled].astype(np.int64)
    product[filled] = chosen * PRODUCTS_PER_CATEGORY + grouped_index(rng, chosen, per_category)
    # A random extra that repeats a product already in the basket is dropped, not a second line.
    repeats = (product[:, -1:] == product[:, :-1]).any(axis=1)
    filled[:, -1] &= ~repeats

    cells = np.flatnonzero(filled.ravel())
    order = cells // slots
    product = product.ravel()[cells].astype(np.int64)
    most = catalogue.max_quantity[product]
    quantity = 1 + np.minimum((rng.random(len(product)) ** 2.5 * most).astype(np.int64), most - 1)
    return Baskets(order=order, product=product, quantity=quantity)
