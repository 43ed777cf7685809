"""piccolo configuration, for piccolo's own migration commands.

The database comes from ``AION_DATABASE_URL`` (PostgreSQL) or, without it,
the SQLite file of the embedded default under ``AION_DATA_DIR`` (``./.aion``).
"""

import os

from piccolo.conf.apps import AppRegistry

from server.db.engine import engine_for

DB = engine_for(
    os.environ.get("AION_DATABASE_URL") or "", os.environ.get("AION_DATA_DIR") or ".aion"
)
APP_REGISTRY = AppRegistry(apps=["server.db.piccolo_app"])
