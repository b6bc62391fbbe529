"""The queue consumer's entry point: `huey_consumer webapp.worker.huey`.

Importing this module builds the app (which creates or upgrades the schema) and registers
every task, so the consumer knows them by name.
"""

from webapp import tasks
from webapp.extensions import huey

app = tasks.worker_app()

__all__ = ["app", "huey"]
