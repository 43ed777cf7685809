"""Uniqueness the code relies on: one row per (tenant, name, revision) of a bundle, one
decision per (tenant, seq). Concurrent uploads of the same revision, or a duplicated
decision sequence number, are refused by the database itself."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-27T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique bundle revisions and decision sequence numbers"

STATEMENTS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS bundles_tenant_name_revision ON bundles (tenant, name, revision)",
    "CREATE UNIQUE INDEX IF NOT EXISTS decisions_tenant_seq ON decisions (tenant, seq)",
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
