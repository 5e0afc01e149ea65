"""Identity resolution: one customer per real person, stable ids, golden records.

Pure code (no Dagster, no warehouse I/O): staged frames in, core frames out. Typical use::

    model = ensure_model(settings.model_path, customers, identifiers, settings)
    result = resolve(customers, identifiers, settings, model, previous_map, previous_history,
                     run_id, source_priority={s.name: s.priority for s in config.sources})
"""

from crm_pipelines.identity.explain import explain_customer
from crm_pipelines.identity.incremental import resolve_incremental
from crm_pipelines.identity.model import ensure_model, load_model, save_model, train_model
from crm_pipelines.identity.resolve import IdentityResult, resolve
from crm_pipelines.identity.settings import IdentitySettings

__all__ = [
    "IdentityResult",
    "IdentitySettings",
    "ensure_model",
    "explain_customer",
    "load_model",
    "resolve",
    "resolve_incremental",
    "save_model",
    "train_model",
]
