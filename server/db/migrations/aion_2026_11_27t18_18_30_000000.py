"""Uniqueness registration relies on: one model per name in a tenant (an agent's
``model://<name>`` must name exactly one), and one trust root per key id in a
tenant (also guaranteed by the ``<tenant>:<key_id>`` primary key)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-27T18:18:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique model names per tenant, trust roots per tenant and key id"

STATEMENTS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS models_tenant_name ON models (tenant, name)",
    "CREATE UNIQUE INDEX IF NOT EXISTS trust_roots_tenant_key ON trust_roots (tenant, key_id)",
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
