from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import JSON
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-27T20:17:21:559086"
VERSION = "1.38.0"
DESCRIPTION = "tasks remember the submitter's roles and kind (admission re-check)"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="aion", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="Task",
        tablename="tasks",
        column_name="submitted_kind",
        db_column_name="submitted_kind",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 16,
            "default": "user",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Task",
        tablename="tasks",
        column_name="submitted_roles",
        db_column_name="submitted_roles",
        column_class_name="JSON",
        column_class=JSON,
        params={
            "default": "[]",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
