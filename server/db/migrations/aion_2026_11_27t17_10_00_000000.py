"""Uniqueness dispatch relies on: one run per (task, attempt) so two workers can never both
start the same attempt, one artifact per (run, name) so a re-reported result never
duplicates an output, and one outbox row per task."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-27T17:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique runs per attempt, artifacts per run and name, outbox rows per task"

STATEMENTS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_task_attempt ON runs (task_id, attempt)",
    "CREATE UNIQUE INDEX IF NOT EXISTS artifacts_run_name ON artifacts (run_id, name)",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_task ON outbox (task_id)",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, created_at)",
    "CREATE INDEX IF NOT EXISTS events_tenant_id ON events (tenant, id)",
)


class RawTable(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="aion", description=DESCRIPTION)

    async def run():
        for statement in STATEMENTS:
            await RawTable.raw(statement)

    manager.add_raw(run)
    return manager
