"""Extension objects, created unbound and bound to the app in `create_app()`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from huey import Huey
from sqlalchemy.orm import DeclarativeBase

from webapp.config import instance_path


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


# Objects stay readable after a commit without a reload (and a new read snapshot).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

# The models' base: Flask-SQLAlchemy's `db.Model` (table names, the session binding) is built
# at run time from `Base`, so type checkers are shown `Base`, which declares the same mapping.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
api = Api()


def make_huey() -> Huey:
    """Build the queue: Redis when `REDIS_URL` is set, else a SQLite file in the instance folder.

    This is the one object that reads configuration at import time: the consumer imports it
    by dotted path before any app exists.
    """
    if os.environ.get("REDIS_URL"):
        from huey import RedisHuey

        return RedisHuey("darkroom", url=os.environ["REDIS_URL"], utc=True)
    folder = instance_path()
    folder.mkdir(parents=True, exist_ok=True)
    from webapp.doorbell import DoorbellHuey

    # The queue lives in its own file so queue traffic never takes the app database's lock.
    return DoorbellHuey("darkroom", filename=str(folder / "huey.db"), utc=True, timeout=10)


huey = make_huey()
