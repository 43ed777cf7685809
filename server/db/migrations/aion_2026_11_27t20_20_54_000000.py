"""One event per seq in a tenant (rows from before seqs keep 0)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-27T20:20:54:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique event seqs per tenant"

STATEMENTS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS events_tenant_seq ON events (tenant, seq) WHERE seq > 0",
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
