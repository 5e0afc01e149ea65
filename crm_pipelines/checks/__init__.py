"""Data contracts (Great Expectations suites declared as data), drift, and their asset checks.

``rules`` holds the plain-data rule and suite types and ``suites`` the contracts per layer; ``gx``
validates frames against them (importing Great Expectations only then) and ``sql`` validates tables
in the warehouse against the same suites, compiled to SQL aggregates; ``drift`` compares runs;
``report`` renders the HTML page; ``results``, the one module importing Dagster, turns outcomes
into ``AssetCheckResult``\\ s.
"""
