"""`python -m bench.statements PATH`: the SQL statements that one GET of PATH runs.

Run with a stack's environment, so the app is built as its web builds it (the same instance
folder, the same settings); `BENCH_AUTHORIZATION`, when set, goes as the Authorization
header. The request goes through Flask's test client twice: the first opens the pool's
connection and warms the caches (and takes the key's once-a-minute `last_used_at` write if
one is due); the second is counted. Statements are counted where SQLite runs them (its trace
callback), so a lookup made on the driver's own cursor (the API key's) counts too; BEGIN,
COMMIT and ROLLBACK are left out. One JSON line comes out: its HTTP status, the statements,
the pool checkouts they took, and how often a key's `last_used_at` may be written.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from sqlalchemy import event

from webapp import create_app
from webapp.auth import LAST_USED_EVERY
from webapp.extensions import db


def main(argv: list[str]) -> int:
    """Count the statements of one request; print them as JSON."""
    (path,) = argv
    authorization = os.environ.get("BENCH_AUTHORIZATION")
    headers = {"Authorization": authorization} if authorization else {}
    app = create_app()
    with app.app_context():
        engine = db.engine
    statements: list[str] = []
    checkouts: list[int] = []

    def on_statement(statement: str) -> None:
        text = " ".join(statement.split())
        if text.split(" ", 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA"):
            statements.append(text)

    def on_checkout(dbapi_conn: Any, *args: Any) -> None:
        checkouts.append(1)
        dbapi_conn.set_trace_callback(on_statement)  # SQLite's; every statement it runs

    event.listen(engine.pool, "checkout", on_checkout)
    client = app.test_client()
    client.get(path, headers=headers)
    statements.clear()
    checkouts.clear()
    answer = client.get(path, headers=headers)
    out = {
        "http_status": answer.status_code,
        "statements": statements,
        "checkouts": len(checkouts),
        "last_used_every_s": LAST_USED_EVERY.total_seconds(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
