"""Uniqueness registration relies on: one agent template per name in a tenant."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-27T18:25:10:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique agent template names per tenant"

STATEMENTS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS agent_templates_tenant_name "
    "ON agent_templates (tenant, name)",
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
