"""A tiny web app that reads its page from PostgreSQL (standard library + psycopg2 only).

    python3 manage.py migrate                 create the table and its first rows (idempotent)
    python3 manage.py runserver 0.0.0.0:8000  serve GET / (the rows) and GET /health

The database is the host named by DATABASE_HOST (default "db": the link's name).
"""

from __future__ import annotations

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

ROWS = ["hello from PostgreSQL", "served by Python", "built and run by skiff compose"]


def connect(attempts: int = 30) -> psycopg2.extensions.connection:
    """A connection to the database, waiting for it to accept connections (it starts in parallel)."""
    host = os.environ.get("DATABASE_HOST", "db")
    for attempt in range(attempts):
        try:
            return psycopg2.connect(host=host, user="postgres", dbname="postgres", connect_timeout=3)
        except psycopg2.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    raise RuntimeError("unreachable")


def migrate() -> None:
    with connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS greetings (id serial PRIMARY KEY, text text NOT NULL)")
        cur.execute("SELECT count(*) FROM greetings")
        if cur.fetchone()[0] == 0:
            cur.executemany("INSERT INTO greetings (text) VALUES (%s)", [(r,) for r in ROWS])
    print("migrated: table greetings ready")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/health":
            self._send(200, "ok\n")
            return
        try:
            with connect(attempts=1) as conn, conn.cursor() as cur:
                cur.execute("SELECT text FROM greetings ORDER BY id")
                rows = [r[0] for r in cur.fetchall()]
        except psycopg2.Error as exc:
            self._send(503, f"database not ready: {exc}".strip() + "\n")
            return
        self._send(200, "".join(f"{r}\n" for r in rows))

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def runserver(address: str) -> None:
    host, _, port = address.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    print(f"serving on {address}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["migrate"]:
        migrate()
    elif sys.argv[1:2] == ["runserver"]:
        runserver(sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0:8000")
    else:
        sys.exit(__doc__)
