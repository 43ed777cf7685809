"""Persistence: piccolo tables, engines for SQLite and PostgreSQL, migrations."""
