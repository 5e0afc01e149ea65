"""What a fitted model hands back: parameters, standard errors, fit quality and convergence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from crm_pipelines.analytics.clv._optimize import Optimum

FIT_FRAME_COLUMNS = (
    "model",
    "parameter",
    "value",
    "std_error",
    "time_unit",
    "log_likelihood",
    "customers_used",
)


@dataclass(frozen=True)
class ModelFit:
    """A fitted BTYD model.

    ``log_likelihood`` is the total over customers (the figure the papers report), in the time unit
    the model was fitted in: ``time_unit_days`` days (7: weeks). Scale parameters (alpha, beta) are
    in that unit; so are the ``t``, ``recency`` and ``T`` arguments of the prediction methods.
    """

    model: str
    params: dict[str, float]
    std_errors: dict[str, float]
    log_likelihood: float
    customers_used: int
    distinct_histories: int
    time_unit_days: float
    converged: bool
    message: str
    iterations: int
    function_evaluations: int
    gradient_norm: float
    extras: dict[str, float] = field(default_factory=dict)
    """Model-specific facts, such as the frequency-spend correlation the Gamma-Gamma fit checked."""

    MODEL_NAME: ClassVar[str] = ""
    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = ()

    @property
    def time_unit(self) -> str:
        days = self.time_unit_days
        return {1.0: "day", 7.0: "week"}.get(float(days), f"{days:g} days")

    def param_array(self) -> np.ndarray:
        return np.array([self.params[name] for name in self.PARAMETER_NAMES], dtype=float)

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: model, parameter, value, std_error, time_unit, log_likelihood,
        customers_used."""
        rows = [
            {
                "model": self.model,
                "parameter": name,
                "value": float(self.params[name]),
                "std_error": float(self.std_errors.get(name, np.nan)),
                "time_unit": self.time_unit,
                "log_likelihood": float(self.log_likelihood),
                "customers_used": int(self.customers_used),
            }
            for name in self.PARAMETER_NAMES
        ]
        frame = pd.DataFrame(rows, columns=list(FIT_FRAME_COLUMNS))
        return frame.astype(
            {"model": "str", "parameter": "str", "time_unit": "str", "customers_used": "int64"}
        )

    @classmethod
    def from_optimum(
        cls,
        optimum: Optimum,
        *,
        customers_used: int,
        distinct_histories: int,
        time_unit_days: float,
        extras: dict[str, float] | None = None,
    ) -> Self:
        names = cls.PARAMETER_NAMES
        return cls(
            model=cls.MODEL_NAME,
            params=dict(zip(names, map(float, optimum.params), strict=True)),
            std_errors=dict(zip(names, map(float, optimum.std_errors), strict=True)),
            log_likelihood=optimum.log_likelihood,
            customers_used=customers_used,
            distinct_histories=distinct_histories,
            time_unit_days=float(time_unit_days),
            converged=optimum.converged,
            message=optimum.message,
            iterations=optimum.iterations,
            function_evaluations=optimum.function_evaluations,
            gradient_norm=optimum.gradient_norm,
            extras=dict(extras or {}),
        )

    @classmethod
    def from_params(cls, *, time_unit_days: float = 7.0, **params: float) -> Self:
        """A model with known parameters (published ones, or read back from the warehouse)."""
        names = cls.PARAMETER_NAMES
        missing = sorted(set(names) - set(params))
        unknown = sorted(set(params) - set(names))
        if missing or unknown:
            raise ValueError(
                f"{cls.MODEL_NAME} needs parameters {list(names)}; missing {missing}, unknown {unknown}"
            )
        if any(not params[name] > 0 for name in names):
            raise ValueError(f"parameters must be positive: {params}")
        return cls(
            model=cls.MODEL_NAME,
            params={name: float(params[name]) for name in names},
            std_errors={name: float("nan") for name in names},
            log_likelihood=float("nan"),
            customers_used=0,
            distinct_histories=0,
            time_unit_days=float(time_unit_days),
            converged=True,
            message="parameters given, not fitted",
            iterations=0,
            function_evaluations=0,
            gradient_norm=float("nan"),
        )
