"""Follow civic-ledger's event feed into a local SQLite table, resumably.

    python examples/feed_consumer.py --api http://127.0.0.1:8000 --token "$TOKEN" \
        --db feed.sqlite [--follow] [--limit 200]

The token needs role ``integrator`` (or ``admin``); the feed holds the events of the
token's scope subtree. Each page of CloudEvents is written together with the cursor (the
page's ``next``) in one SQLite transaction, so after a crash or a restart the consumer
resumes exactly where the last committed page ended: every event is stored once.

Without ``--follow`` it stops when it has caught up (a page shorter than ``--limit``);
with it, it keeps polling every ``--interval`` seconds until ``--max-seconds`` (if given)
or Ctrl-C. Only the standard library and ``httpx`` are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from typing import Any

import httpx

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position     INTEGER PRIMARY KEY,   -- the feed position (strictly increasing)
    id           TEXT    NOT NULL UNIQUE,
    type         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    time         TEXT    NOT NULL,
    node_code    TEXT    NOT NULL,
    data         TEXT    NOT NULL,
    cloudevent   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_cursor (
    feed      TEXT    PRIMARY KEY,
    position  INTEGER NOT NULL,
    pages     INTEGER NOT NULL DEFAULT 0
);
"""


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    return db


def cursor_of(db: sqlite3.Connection, feed: str) -> int:
    row = db.execute("SELECT position FROM feed_cursor WHERE feed = ?", (feed,)).fetchone()
    return int(row[0]) if row else 0


def store_page(db: sqlite3.Connection, feed: str, items: list[dict[str, Any]], next_: int) -> None:
    """The page's rows and the new cursor in one transaction: all or nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for ce in items:
            db.execute(
                "INSERT INTO events (position, id, type, source, subject, time, node_code, data,"
                " cloudevent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    int(ce["position"]),
                    ce["id"],
                    ce["type"],
                    ce["source"],
                    ce["subject"],
                    ce["time"],
                    ce["nodecode"],
                    json.dumps(ce["data"], ensure_ascii=False),
                    json.dumps(ce, ensure_ascii=False),
                ),
            )
        db.execute(
            "INSERT INTO feed_cursor (feed, position, pages) VALUES (?, ?, 1)"
            " ON CONFLICT (feed) DO UPDATE SET position = excluded.position,"
            " pages = feed_cursor.pages + 1",
            (feed, next_),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def fetch_page(client: httpx.Client, after: int, limit: int) -> dict[str, Any]:
    """GET one page, waiting out 429/503 (Retry-After) a bounded number of times."""
    for _ in range(10):
        r = client.get("/v1/feed", params={"after": after, "limit": limit})
        if r.status_code in (429, 503):
            time.sleep(min(float(r.headers.get("retry-after", "1")), 30.0))
            continue
        r.raise_for_status()
        page: dict[str, Any] = r.json()
        return page
    raise RuntimeError("the feed stayed unavailable")


def run(
    api: str,
    token: str,
    db_path: str,
    *,
    limit: int = 200,
    follow: bool = False,
    interval: float = 2.0,
    max_pages: int | None = None,
    max_seconds: float | None = None,
) -> int:
    """Consume until caught up (or, with ``follow``, until ``max_seconds``); returns rows stored."""
    db = open_db(db_path)
    feed = api.rstrip("/") + "/v1/feed"
    stored = 0
    pages = 0
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        with httpx.Client(base_url=api, headers=headers, timeout=30.0) as client:
            while True:
                after = cursor_of(db, feed)
                page = fetch_page(client, after, limit)
                items = page["items"]
                store_page(db, feed, items, int(page["next"]))
                stored += len(items)
                pages += 1
                if max_pages is not None and pages >= max_pages:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if len(items) < limit:  # caught up with the settled feed
                    if not follow:
                        break
                    time.sleep(interval)
    finally:
        db.close()
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default=os.environ.get("CIVIC_API", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("CIVIC_TOKEN"))
    parser.add_argument("--db", default="feed.sqlite")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--follow", action="store_true", help="keep polling after catching up")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--max-pages", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or CIVIC_TOKEN) is required")
    stored = run(
        args.api,
        args.token,
        args.db,
        limit=args.limit,
        follow=args.follow,
        interval=args.interval,
        max_pages=args.max_pages,
        max_seconds=args.max_seconds,
    )
    print(f"stored {stored} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
