"""Stores: durable records and live state, each behind a small interface.

`base` defines the interfaces. `sql` implements records (SQLite or PostgreSQL) and a live store
in SQL tables; `redis` implements the live store in Redis, standalone or Cluster.
"""
