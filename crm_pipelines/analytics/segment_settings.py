"""``segments:`` in crm.yaml: the settings of marts.customer_segments.

Kept apart from :mod:`crm_pipelines.analytics.segments` so that loading the configuration does not
import pandas and scikit-learn.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SegmentationSettings(BaseModel):
    """``segments:`` in crm.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k_min: int = Field(3, ge=2, description="Fewest behavioural clusters to try.")
    k_max: int = Field(8, ge=2, description="Most behavioural clusters to try.")
    silhouette_sample: int = Field(10_000, ge=100, description="Customers sampled to score each k.")
    key_share: float = Field(0.2, gt=0, lt=1, description="Share of buyers in the key value tier.")
    emotional_nps: int = Field(
        9, ge=0, le=10, description="Latest NPS from which a repeat buyer is emotional."
    )
    emotional_csat: float = Field(
        4.5, ge=1, le=5, description="Average CSAT from which a repeat buyer is emotional."
    )
    random_state: int = Field(0, description="Seed of k-means and of the silhouette sample.")
    growth_window_days: int = Field(180, ge=7, description="Window comparing recent and earlier purchases.")
    core_category_share: float = Field(
        0.5, gt=0, le=1, description="The top categories making up this share of purchased lines are 'core'."
    )

    @model_validator(mode="after")
    def _k_range(self) -> SegmentationSettings:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be at least k_min ({self.k_min})")
        return self
