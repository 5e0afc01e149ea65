"""Churn risk: the probability that a customer does not buy within the next ``horizon_days``, and why.

A customer has **churned** as of a cutoff day when she has bought before (a purchase: status in
``purchase_statuses``, not a refund) but makes no purchase in the ``horizon_days`` after it.

The model is trained and checked on the past, never on the future it scores:

- train: features as of ``as_of - 2 * horizon``, labels from the following ``horizon`` days;
- holdout check: features as of ``as_of - horizon``, labels from the last ``horizon`` days up to
  ``as_of``; reported as ROC AUC, Brier score and a calibration table by decile;
- scoring: the model is refitted on the holdout window (the most recent fully observed one), then
  applied to features as of ``as_of``. The holdout figures measure exactly this procedure: a model
  trained one horizon earlier than the customers it scores.

Per-customer drivers: global importance is permutation importance on the holdout (drop in ROC AUC
when a feature is shuffled). Per customer, each of the most important features is in turn set to
its population median, and the drop in predicted churn probability is that feature's effect for
her: "her churn risk is 0.31 higher because of her recency". Cheap (one prediction pass per
feature), model-agnostic, and readable; effects do not add up to the prediction as SHAP values do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from crm_pipelines.analytics.clv.summary import (
    DEFAULT_PURCHASE_STATUSES,
    ORDER_COLUMNS,
    DateLike,
    day_number,
    purchase_days,
)
from crm_pipelines.analytics.predictive_tables import ids_in
from crm_pipelines.analytics.tree_reuse import KnownRowsPredictor, TreeLayout, known_rows_predictor

ExtraFeatures = pd.DataFrame | Callable[[pd.Timestamp], pd.DataFrame] | None

BASE_FEATURES = (
    "recency_days",
    "tenure_days",
    "purchase_days",
    "revenue_total",
    "order_value_mean",
    "interval_mean_days",
    "interval_std_days",
    "recency_to_interval",
    "purchases_last_90d",
    "purchases_prior_90d",
    "purchase_trend_90d",
    "purchases_last_180d",
    "revenue_last_90d",
    "refund_share",
    "cancelled_share",
)
DRIVER_COUNT = 3
DRIVER_CANDIDATES = 5
IMPORTANCE_ROWS = 20_000
DRIVER_SLICE_ROWS = 25_000
"""Customers whose leaves are kept at once by each of the DRIVER_THREADS while drivers are computed (a
byte per tree each, and about eight per tree splitting on a candidate while that candidate is tried)."""
DRIVER_THREADS = 2


@dataclass(frozen=True)
class ChurnResult:
    """Everything a churn run produces; frames are ready to publish."""

    scores: pd.DataFrame
    """Per customer as of ``as_of``: customer_id, churn_probability, risk_decile (10 = riskiest),
    driver_1..3 (feature names) and driver_1..3_effect (probability points the feature adds)."""
    features: pd.DataFrame
    """The features as of ``as_of`` the scores were computed from, one row per customer."""
    calibration: pd.DataFrame
    """Holdout deciles of predicted risk: decile, customers, mean_predicted, observed_churn_rate."""
    feature_importance: pd.DataFrame
    """feature, importance (mean drop in holdout ROC AUC when shuffled), importance_std."""
    metrics: dict[str, float | int | str] = field(default_factory=dict)
    model: HistGradientBoostingClassifier | None = None
    reference: pd.Series | None = None
    """Median of each feature in the holdout window: the "typical customer" drivers compare against.
    Keep it with ``model`` to score later with :func:`score_churn`."""
    driver_candidates: tuple[str, ...] = ()
    """The most important features, in order: the ones drivers are chosen from."""

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.metrics])


def _order_events(orders: pd.DataFrame, end_day: int) -> pd.DataFrame:
    """All orders up to end_day with their day and kind (for refund and cancellation shares)."""
    missing = [c for c in ORDER_COLUMNS if c not in orders.columns]
    if missing:
        raise ValueError(
            f"orders lack column(s) {missing}; expected the core.orders shape with {list(ORDER_COLUMNS)}"
        )
    ordered_at = pd.to_datetime(orders["ordered_at"], utc=True)
    present = ordered_at.notna().to_numpy() & orders["customer_id"].notna().to_numpy()
    micros = ordered_at[present].dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")
    status = orders.loc[present, "status"].astype("str").str.strip().str.lower().to_numpy()
    events = pd.DataFrame(
        {
            "customer_id": orders.loc[present, "customer_id"].astype("str").to_numpy(),
            "day": micros // 86_400_000_000,
            "is_refund": orders.loc[present, "is_refund"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            | (status == "refunded"),
            "is_cancelled": status == "cancelled",
        }
    )
    return events[events["day"] <= end_day]


def churn_features(
    orders: pd.DataFrame,
    cutoff: DateLike,
    *,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
    extra_features: ExtraFeatures = None,
    _days: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features per customer with a purchase up to the end of day ``cutoff`` (index: customer_id).

    - ``recency_days``, ``tenure_days``: days since the last and the first purchase day;
    - ``purchase_days``, ``revenue_total``, ``order_value_mean``: purchase days, their value, the mean;
    - ``interval_mean_days``, ``interval_std_days``: gaps between purchase days (NaN when too few);
    - ``recency_to_interval``: recency over the usual gap (how overdue the next purchase is);
    - ``purchases_last_90d``, ``purchases_prior_90d`` (91-180 days ago), ``purchase_trend_90d`` (their
      difference), ``purchases_last_180d``, ``revenue_last_90d``;
    - ``refund_share``: refund records / (purchases + refund records); ``cancelled_share``: cancelled
      orders / all orders;
    - any numeric columns of ``extra_features`` (a frame with ``customer_id``, or a function of the
      cutoff returning one, which keeps them point-in-time: a frame computed today leaks the future
      into the training cutoff). Missing values stay NaN; the model handles them.
    """
    end_day = day_number(cutoff)
    days = purchase_days(orders, purchase_statuses=purchase_statuses) if _days is None else _days
    days = days[days["day"] <= end_day]
    if days.empty:
        return pd.DataFrame(columns=list(BASE_FEATURES), index=pd.Index([], name="customer_id", dtype="str"))
    customer, first_row, counts = np.unique(
        days["customer_id"].to_numpy(), return_index=True, return_counts=True
    )
    day = days["day"].to_numpy()
    value = days["value"].to_numpy()
    code = np.repeat(np.arange(len(customer)), counts)
    last_row = first_row + counts - 1

    gaps = np.diff(day).astype(float)
    same_customer = code[1:] == code[:-1]
    gap_code, gap = code[1:][same_customer], gaps[same_customer]
    n_gaps = np.bincount(gap_code, minlength=len(customer))
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_mean = np.bincount(gap_code, weights=gap, minlength=len(customer)) / n_gaps
        gap_square = np.bincount(gap_code, weights=gap**2, minlength=len(customer)) / n_gaps
        gap_std = np.where(n_gaps >= 2, np.sqrt(np.maximum(gap_square - gap_mean**2, 0.0)), np.nan)

    age = end_day - day
    recent = age < 90
    prior = (age >= 90) & (age < 180)
    last_90 = np.bincount(code[recent], minlength=len(customer))
    prior_90 = np.bincount(code[prior], minlength=len(customer))
    revenue = np.bincount(code, weights=value, minlength=len(customer))
    recency = (end_day - day[last_row]).astype(float)

    events = _order_events(orders, end_day)
    per_customer = events.groupby("customer_id").agg(
        orders=("day", "size"), refunds=("is_refund", "sum"), cancelled=("is_cancelled", "sum")
    )
    per_customer = per_customer.reindex(customer, fill_value=0)
    refunds = per_customer["refunds"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        features = pd.DataFrame(
            {
                "recency_days": recency,
                "tenure_days": (end_day - day[first_row]).astype(float),
                "purchase_days": counts.astype(float),
                "revenue_total": revenue,
                "order_value_mean": revenue / counts,
                "interval_mean_days": gap_mean,
                "interval_std_days": gap_std,
                "recency_to_interval": recency / gap_mean,
                "purchases_last_90d": last_90.astype(float),
                "purchases_prior_90d": prior_90.astype(float),
                "purchase_trend_90d": (last_90 - prior_90).astype(float),
                "purchases_last_180d": (last_90 + prior_90).astype(float),
                "revenue_last_90d": np.bincount(code[recent], weights=value[recent], minlength=len(customer)),
                "refund_share": refunds / (counts + refunds),
                "cancelled_share": per_customer["cancelled"].to_numpy(dtype=float)
                / np.maximum(per_customer["orders"].to_numpy(dtype=float), 1.0),
            },
            index=pd.Index(customer, name="customer_id", dtype="str"),
        )
    return _with_extra_features(features, extra_features, end_day)


def _with_extra_features(features: pd.DataFrame, extra: ExtraFeatures, end_day: int) -> pd.DataFrame:
    if extra is None:
        return features
    frame = extra(pd.Timestamp(end_day, unit="D", tz="UTC")) if callable(extra) else extra
    if "customer_id" not in frame.columns:
        raise ValueError("extra_features must have a customer_id column")
    frame = frame.set_index(frame["customer_id"].astype("str")).drop(columns="customer_id")
    if frame.index.has_duplicates:
        raise ValueError("extra_features must have one row per customer_id")
    clash = sorted(set(frame.columns) & set(features.columns))
    non_numeric = [
        c
        for c in frame.columns
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if clash or non_numeric:
        raise ValueError(
            f"extra_features: columns {clash} clash with built-in features; {non_numeric} are not numeric"
        )
    return features.join(frame.astype(float), how="left")


def churn_labels(days: pd.DataFrame, customers: pd.Index, cutoff_day: int, horizon_days: int) -> np.ndarray:
    """True where the customer makes no purchase in (cutoff_day, cutoff_day + horizon_days]."""
    window = days[(days["day"] > cutoff_day) & (days["day"] <= cutoff_day + horizon_days)]
    return ~customers.isin(window["customer_id"].unique())


def _classifier(random_state: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=100,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=random_state,
    )


def _calibration_table(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> pd.DataFrame:
    ranks = pd.Series(predicted).rank(method="first").to_numpy()
    decile = np.ceil(ranks * bins / len(ranks)).astype("int64")
    frame = pd.DataFrame({"decile": decile, "predicted": predicted, "observed": observed.astype(float)})
    table = frame.groupby("decile").agg(
        customers=("predicted", "size"),
        mean_predicted=("predicted", "mean"),
        observed_churn_rate=("observed", "mean"),
        min_predicted=("predicted", "min"),
        max_predicted=("predicted", "max"),
    )
    return table.reset_index().astype({"decile": "int64", "customers": "int64"})


def _drivers(
    model: HistGradientBoostingClassifier,
    features: pd.DataFrame,
    reference: pd.Series,
    candidates: list[str],
    base: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per customer, the candidate features whose value raises her risk most over the population median
    (:func:`_probability_and_drivers`)."""
    return _probability_and_drivers(model, features, reference, candidates, base)[1]


def _probability_and_drivers(
    model: HistGradientBoostingClassifier,
    features: pd.DataFrame,
    reference: pd.Series,
    candidates: list[str],
    base: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, pd.DataFrame]:
    """The model's churn probability of each row of ``features`` and her drivers: the candidate features
    whose value raises her risk most over the population median.

    ``base`` is the model's churn probability of ``features`` when the caller has it; otherwise it is
    summed from the leaves the drivers need anyway, in the model's order, so it is the
    model's number without a second pass over the trees. A customer whose value already is the median
    keeps her prediction, so only the other rows are predicted again."""
    if features.empty:
        columns = {f"driver_{k + 1}{suffix}": [] for k in range(DRIVER_COUNT) for suffix in ("", "_effect")}
        return np.empty(0), pd.DataFrame(columns, index=features.index)
    probability = np.empty(len(features)) if base is None else base
    effects = np.zeros((len(features), len(candidates)))
    layout = TreeLayout(model) if TreeLayout.fits(model) else None

    def drive(start: int, part: pd.DataFrame) -> None:
        stop = start + len(part)
        predictor = known_rows_predictor(model, part, layout)
        if predictor is not None:
            if base is None:
                probability[start:stop] = predictor.probability(predictor.known_raw_predict())
            effects[start:stop] = _known_row_effects(predictor, part, reference, candidates, probability[start:stop])
        else:
            if base is None:
                probability[start:stop] = model.predict_proba(part)[:, 1]
            effects[start:stop] = _effects(model, part, reference, candidates, probability[start:stop])

    # Rows are predicted one by one, so predicting the changed rows alone, a slice at a time (each
    # slice's leaves are kept while its candidates are tried), gives the same numbers. Slices are
    # independent: DRIVER_THREADS of them are worked on at once (tree walks and array passes run
    # without the GIL), each thread with ``threads`` OpenMP threads (a new thread starts with all).
    starts = range(0, len(features), DRIVER_SLICE_ROWS)
    parts = [features.iloc[start : start + DRIVER_SLICE_ROWS] for start in starts]
    with ThreadPoolExecutor(
        max_workers=min(DRIVER_THREADS, len(parts)), initializer=threadpool_limits, initargs=(threads, "openmp")
    ) as pool:
        for done in [pool.submit(drive, start, part) for start, part in zip(starts, parts, strict=True)]:
            done.result()
    order = np.argsort(-effects, axis=1, kind="stable")[:, :DRIVER_COUNT]
    out = {}
    names = np.array(candidates, dtype=object)
    for k in range(DRIVER_COUNT):
        if k >= len(candidates):
            out[f"driver_{k + 1}"] = pd.array([None] * len(features), dtype="str")
            out[f"driver_{k + 1}_effect"] = np.full(len(features), np.nan)
            continue
        effect = effects[np.arange(len(features)), order[:, k]]
        raises_risk = effect > 1e-6
        out[f"driver_{k + 1}"] = pd.array(np.where(raises_risk, names[order[:, k]], None), dtype="str")
        out[f"driver_{k + 1}_effect"] = np.where(raises_risk, effect, np.nan)
    return probability, pd.DataFrame(out, index=features.index)


def _changed_rows(values: np.ndarray, typical: float) -> np.ndarray:
    """Where ``values`` differ from ``typical`` (NaN equals NaN: the median of a feature nobody has)."""
    return ~((values == typical) | (np.isnan(values) & np.isnan(typical)))


def _known_row_effects(
    predictor: KnownRowsPredictor,
    features: pd.DataFrame,
    reference: pd.Series,
    candidates: list[str],
    base: np.ndarray,
) -> np.ndarray:
    """:func:`_effects` for the rows ``predictor`` knows: only the changed rows, by the trees that split
    on the candidate, without building a frame per candidate."""
    effects = np.zeros((len(features), len(candidates)))
    columns = list(features.columns)
    for j, name in enumerate(candidates):
        values, typical = features[name].to_numpy(dtype="float64"), float(reference[name])
        changed = np.flatnonzero(_changed_rows(values, typical))
        if len(changed):
            moved = predictor.raw_predict_with(changed, columns.index(name), typical)
            effects[changed, j] = base[changed] - predictor.probability(moved)
    return effects


def _effects(
    model: HistGradientBoostingClassifier,
    features: pd.DataFrame,
    reference: pd.Series,
    candidates: list[str],
    base: np.ndarray,
) -> np.ndarray:
    """Per row and candidate: the drop in churn probability when the feature is set to its median."""
    effects = np.zeros((len(features), len(candidates)))
    for j, name in enumerate(candidates):
        values, typical = features[name].to_numpy(dtype="float64"), float(reference[name])
        changed = _changed_rows(values, typical)
        if changed.any():
            moved = features.loc[changed].assign(**{name: reference[name]})
            effects[changed, j] = base[changed] - model.predict_proba(moved)[:, 1]
    return effects


class OrderHistory(Protocol):
    """What the churn model reads about purchases: features at a cutoff day, and who bought in a window.

    :class:`FrameOrderHistory` answers from a core.orders frame; the warehouse answers with one query
    for any number of cutoffs (``crm_pipelines.facts.churn.WarehouseOrderHistory``)."""

    def features(self, cutoff_day: int) -> pd.DataFrame: ...

    def features_at(self, cutoff_days: Sequence[int]) -> list[pd.DataFrame]:
        """:meth:`features` of each cutoff day, in order (the warehouse answers them in one query)."""
        ...

    def buyers(self, after_day: int, through_day: int) -> pd.Index: ...


class FrameOrderHistory:
    """:class:`OrderHistory` of a core.orders frame (the reference implementation)."""

    def __init__(self, orders: pd.DataFrame, purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES):
        self.orders = orders
        self.days = purchase_days(orders, purchase_statuses=purchase_statuses)

    def features(self, cutoff_day: int) -> pd.DataFrame:
        return churn_features(self.orders, pd.Timestamp(cutoff_day, unit="D"), _days=self.days)

    def features_at(self, cutoff_days: Sequence[int]) -> list[pd.DataFrame]:
        return [self.features(day) for day in cutoff_days]

    def buyers(self, after_day: int, through_day: int) -> pd.Index:
        window = self.days[(self.days["day"] > after_day) & (self.days["day"] <= through_day)]
        return pd.Index(window["customer_id"].unique())


def _history(orders: pd.DataFrame | OrderHistory, purchase_statuses: Iterable[str]) -> OrderHistory:
    return FrameOrderHistory(orders, purchase_statuses) if isinstance(orders, pd.DataFrame) else orders


def train_churn_model(
    orders: pd.DataFrame | OrderHistory,
    as_of: DateLike,
    *,
    horizon_days: int = 90,
    extra_features: ExtraFeatures = None,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
    random_state: int = 0,
    threads: int = 1,
) -> ChurnResult:
    """Train, check on a later time window, refit and score every customer as of ``as_of``.

    ``threads`` caps the OpenMP threads of the gradient boosting. One is the default: results do not
    depend on it, and on a machine shared with other work more threads spin against each other (a
    run measured 108 s with all threads of two busy cores against 9 s with one). Raise it on a
    dedicated machine for large customer bases. The cap holds on every thread: the scoring model is
    fitted on a second Python thread while the training model is checked, and the drivers are
    computed a slice of customers per thread; Python threads wait for the GIL instead of spinning.
    """
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    end_day = day_number(as_of)
    train_cutoff, holdout_cutoff = end_day - 2 * horizon_days, end_day - horizon_days
    history = _history(orders, purchase_statuses)

    cutoffs = (train_cutoff, holdout_cutoff, end_day)
    features_by_day = dict(zip(cutoffs, history.features_at(cutoffs), strict=True))

    def features_at(cutoff_day: int) -> pd.DataFrame:
        return _with_extra_features(features_by_day[cutoff_day], extra_features, cutoff_day)

    def window(cutoff_day: int) -> tuple[pd.DataFrame, np.ndarray]:
        features = features_at(cutoff_day)
        returning = history.buyers(cutoff_day, min(cutoff_day + horizon_days, end_day))
        return features, ~ids_in(features.index, returning)

    train_x, train_y = window(train_cutoff)
    if len(train_x) < 50 or train_y.all() or not train_y.any():
        raise ValueError(
            f"churn model needs purchases before {pd.Timestamp(train_cutoff, unit='D').date()} "
            f"(as_of minus twice the {horizon_days}-day horizon) from at least 50 customers, with both "
            f"churned and returning ones; found {len(train_x)} customers, {int(train_y.sum())} churned"
        )
    holdout_x, holdout_y = window(holdout_cutoff)
    current = features_at(end_day)
    with threadpool_limits(limits=threads, user_api="openmp"):
        return _fit_check_and_score(
            train_x,
            train_y,
            holdout_x,
            holdout_y,
            current,
            random_state,
            threads,
            metrics={
                "horizon_days": int(horizon_days),
                "train_cutoff": str(pd.Timestamp(train_cutoff, unit="D").date()),
                "holdout_cutoff": str(pd.Timestamp(holdout_cutoff, unit="D").date()),
                "as_of": str(pd.Timestamp(end_day, unit="D").date()),
            },
        )


def _fit_check_and_score(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    holdout_x: pd.DataFrame,
    holdout_y: np.ndarray,
    current: pd.DataFrame,
    random_state: int,
    threads: int,
    metrics: dict[str, float | int | str],
) -> ChurnResult:
    both_classes = 0 < holdout_y.sum() < len(holdout_y)
    model = _classifier(random_state).fit(train_x, train_y)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-refit") as pool:
        # The scoring model needs nothing from the training model's checks, so it is fitted meanwhile on
        # a thread of its own (most of a fit runs without the GIL), from a frame of its own; only once
        # the training model is fitted, so that two fits' working memory never adds up.
        refit = None
        if both_classes:
            refit = pool.submit(_fit, holdout_x.copy(deep=False), holdout_y, random_state, threads)
        predicted, feature_importance = _holdout_check(model, holdout_x, holdout_y, random_state)
        scoring_model = model if refit is None else refit.result()
    candidates = feature_importance["feature"].head(DRIVER_CANDIDATES).tolist()
    reference = holdout_x.median()
    scores = _scores(scoring_model, current, reference, candidates, threads)
    metrics = {
        **metrics,
        "customers_train": len(train_x),
        "customers_holdout": len(holdout_x),
        "customers_scored": len(current),
        "churn_rate_train": float(train_y.mean()),
        "churn_rate_holdout": float(holdout_y.mean()),
        "roc_auc": float(roc_auc_score(holdout_y, predicted)) if both_classes else float("nan"),
        "brier_score": float(brier_score_loss(holdout_y, predicted)),
        "mean_predicted_holdout": float(predicted.mean()),
    }
    return ChurnResult(
        scores=scores,
        features=current.reset_index(),
        calibration=_calibration_table(predicted, holdout_y),
        feature_importance=feature_importance,
        metrics=metrics,
        model=scoring_model,
        reference=reference,
        driver_candidates=tuple(candidates),
    )


def _fit(x: pd.DataFrame, y: np.ndarray, random_state: int, threads: int) -> HistGradientBoostingClassifier:
    # OpenMP's thread limit is per thread: a new one starts with every core.
    with threadpool_limits(limits=threads, user_api="openmp"):
        return _classifier(random_state).fit(x, y)


def _holdout_check(
    model: HistGradientBoostingClassifier, holdout_x: pd.DataFrame, holdout_y: np.ndarray, random_state: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """The training window model's predictions on the holdout window, and its permutation importance there."""
    # The same scores; only rows that the shuffled feature moves out of a leaf are predicted again, by
    # that tree, and the holdout's predictions are summed from the remembered leaves in the model's order.
    known = known_rows_predictor(model, holdout_x)
    if known is None:
        predicted, importance_model = model.predict_proba(holdout_x)[:, 1], model
    else:
        predicted, importance_model = known.probability(known.known_raw_predict()), known.model_view()
    both_classes = 0 < holdout_y.sum() < len(holdout_y)
    importance = permutation_importance(
        importance_model,
        holdout_x,
        holdout_y,
        scoring="roc_auc" if both_classes else "neg_brier_score",
        n_repeats=3,
        max_samples=min(1.0, IMPORTANCE_ROWS / max(len(holdout_x), 1)),
        random_state=random_state,
    )
    feature_importance = (
        pd.DataFrame(
            {
                "feature": list(holdout_x.columns),
                "importance": importance.importances_mean,
                "importance_std": importance.importances_std,
            }
        )
        .sort_values(["importance", "feature"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )
    return predicted, feature_importance


def _scores(
    model: HistGradientBoostingClassifier,
    features: pd.DataFrame,
    reference: pd.Series,
    candidates: list[str],
    threads: int = 1,
) -> pd.DataFrame:
    """customer_id, churn_probability, risk_decile and the drivers of each customer in ``features``."""
    probability, drivers = _probability_and_drivers(model, features, reference, candidates, threads=threads)
    ranks = pd.Series(probability).rank(method="first").to_numpy()
    scores = pd.DataFrame(
        {
            "customer_id": pd.array(features.index, dtype="str"),
            "churn_probability": probability,
            "risk_decile": np.ceil(ranks * 10 / max(len(ranks), 1)).astype("int64"),
        }
    )
    return pd.concat([scores, drivers.reset_index(drop=True)], axis=1)


def score_churn(
    model: HistGradientBoostingClassifier,
    orders: pd.DataFrame | OrderHistory,
    as_of: DateLike,
    reference: pd.Series,
    driver_candidates: Iterable[str],
    *,
    extra_features: ExtraFeatures = None,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
    threads: int = 1,
) -> pd.DataFrame:
    """Score every customer with a purchase up to ``as_of`` with a model trained earlier.

    ``model``, ``reference`` and ``driver_candidates`` are a :class:`ChurnResult`'s ``model``,
    ``reference`` and ``driver_candidates``; ``extra_features`` must be what it was trained with.
    Returns the columns of :attr:`ChurnResult.scores` (``threads`` as in :func:`train_churn_model`).
    Raises ValueError when the features differ from the model's (other extra features).
    """
    end_day = day_number(as_of)
    features = _with_extra_features(_history(orders, purchase_statuses).features(end_day), extra_features, end_day)
    expected = list(getattr(model, "feature_names_in_", features.columns))
    if list(features.columns) != expected:
        raise ValueError(
            f"the churn model was trained on features {expected}, but these are {list(features.columns)}; "
            "retrain it"
        )
    with threadpool_limits(limits=threads, user_api="openmp"):
        return _scores(model, features, reference, list(driver_candidates), threads)


def service_features(
    tickets: pd.DataFrame, surveys: pd.DataFrame, *, window_days: int = 90
) -> Callable[[pd.Timestamp], pd.DataFrame]:
    """Support and survey features as of a cutoff day, for ``extra_features`` (core table shapes).

    For the day the cutoff names (everything up to its end counts), per customer:
    ``tickets_total`` and ``tickets_last_<window_days>d`` (tickets opened), ``satisfaction_mean`` (CSAT
    of tickets resolved by then; tickets without ``resolved_at`` count from when they were opened), and
    ``nps_latest`` (the latest survey score). NaN means none (no ticket in the window, no answer):
    customers without any ticket or answer are absent here and NaN after the join, so NaN is used for
    every "none" alike, and the model learns where missing values go.
    """
    opened = pd.to_datetime(tickets["opened_at"], utc=True)
    rated_at = pd.to_datetime(tickets["resolved_at"], utc=True).fillna(opened)
    ticket_customer = tickets["customer_id"].astype("str")
    satisfaction = pd.to_numeric(tickets["satisfaction_score"], errors="coerce")
    responded = pd.to_datetime(surveys["responded_at"], utc=True)
    survey_customer = surveys["customer_id"].astype("str")
    nps = pd.to_numeric(surveys["nps_score"], errors="coerce")
    recent_name = f"tickets_last_{window_days}d"

    def as_of(cutoff: pd.Timestamp) -> pd.DataFrame:
        end = pd.Timestamp(cutoff).normalize() + pd.Timedelta(days=1)
        known = (opened < end) & ticket_customer.notna()
        recent = known & (opened >= end - pd.Timedelta(days=window_days))
        rated = (rated_at < end) & satisfaction.notna() & ticket_customer.notna()
        answered = (responded < end) & nps.notna() & survey_customer.notna()
        latest = (
            pd.DataFrame(
                {"customer_id": survey_customer[answered], "at": responded[answered], "nps": nps[answered]}
            )
            .sort_values(["customer_id", "at"], kind="stable")
            .groupby("customer_id")["nps"]
            .last()
        )
        frame = pd.concat(
            [
                ticket_customer[known].value_counts().rename("tickets_total"),
                ticket_customer[recent].value_counts().rename(recent_name),
                satisfaction[rated].groupby(ticket_customer[rated]).mean().rename("satisfaction_mean"),
                latest.rename("nps_latest"),
            ],
            axis=1,
        )
        columns = ["tickets_total", recent_name, "satisfaction_mean", "nps_latest"]
        frame = frame.reindex(columns=columns).astype(float)
        return frame.rename_axis("customer_id").reset_index().astype({"customer_id": "str"})

    return as_of
