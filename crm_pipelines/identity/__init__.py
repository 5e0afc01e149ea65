"""Identity resolution: one customer per real person, stable ids, golden records.

Pure code (no Dagster, no warehouse I/O): staged frames in, core frames out. Typical use::

    model = ensure_model(settings.model_path, customers, identifiers, settings)
    result = resolve(customers, identifiers, settings, model, previous_map, previous_history,
                     run_id, source_priority={s.name: s.priority for s in config.sources})
"""

# Imported on first use: Splink costs about a second to import, and loading the Dagster
# definitions (which reads IdentitySettings through the configuration) should not pay it.
from crm_pipelines._lazy import lazy_exports

_EXPORTS = {
    "IdentityResult": "crm_pipelines.identity.resolve",
    "IdentitySettings": "crm_pipelines.identity.settings",
    "ensure_model": "crm_pipelines.identity.model",
    "explain_customer": "crm_pipelines.identity.explain",
    "load_model": "crm_pipelines.identity.model",
    "resolve": "crm_pipelines.identity.resolve",
    "resolve_incremental": "crm_pipelines.identity.incremental",
    "save_model": "crm_pipelines.identity.model",
    "train_model": "crm_pipelines.identity.model",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
