"""Staging: raw source rows typed, normalized and checked, without any warehouse I/O.

- :func:`stage_entity` turns one entity's raw rows from every source into staged rows, quarantined
  rows with reasons, a per-source reconciliation and (for customers) declared identifiers.
- :func:`referenced_customers` adds stub customers for people that orders, tickets and other rows
  name but no source delivered as a customer record.
- :func:`customer_reference` says which customer record each row of an entity belongs to.
"""
