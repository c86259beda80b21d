"""Data: the database engine and sessions, the tables, and their Alembic migrations.

The bottom layer of drip: it imports nothing else from the package but the settings.
"""
