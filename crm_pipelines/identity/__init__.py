"""Identity resolution: one customer per real person, stable ids, golden records.

Pure code (no Dagster, no warehouse I/O): staged frames in, core frames out. Typical use::

    model = ensure_model(settings.model_path, customers, identifiers, settings)
    result = resolve(customers, identifiers, settings, model, previous_map, previous_history,
                     run_id, source_priority={s.name: s.priority for s in config.sources})

Import each name from its module (``crm_pipelines.identity.model``, ``.resolve``, ``.incremental``,
``.explain``, ``.settings``): this package exports nothing, so importing it (and Splink with it) costs
nothing until a run matches records.
"""
