"""The SQLite database: one connection per request (``g.db``), the schema, and ``flask init-db``."""

from __future__ import annotations

import sqlite3

import click
from flask import Flask, current_app, g

#: Sample posts ``init-db`` writes, so the pages have something to render.
SAMPLE_POSTS = 25
#: Seconds a connection waits for another writer's lock before "database is locked".
BUSY_TIMEOUT_S = 10.0


def get_db() -> sqlite3.Connection:
    """The request's connection (opened on first use, closed when the request ends)."""
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=BUSY_TIMEOUT_S,
                               detect_types=sqlite3.PARSE_DECLTYPES)
        g.db.row_factory = sqlite3.Row
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    """Close the request's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db(posts: int = SAMPLE_POSTS) -> None:
    """Create the tables (dropping old ones) and write ``posts`` sample posts."""
    db = get_db()
    with current_app.open_resource("schema.sql") as schema:
        db.executescript(schema.read().decode("utf8"))
    db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the API's writers
    db.executemany("INSERT INTO author (name) VALUES (?)", [("ada",), ("grace",), ("linus",)])
    db.executemany(
        "INSERT INTO post (author_id, title, body) VALUES (?, ?, ?)",
        [(1 + i % 3, f"Post number {i + 1}", ("A paragraph of sample text. " * (5 + i % 7)).strip())
         for i in range(posts)],
    )
    db.commit()


@click.command("init-db")
@click.option("--posts", default=SAMPLE_POSTS, show_default=True, type=click.IntRange(0, 10_000),
              help="sample posts to write")
def init_db_command(posts: int) -> None:
    """Clear the existing data and create new tables (with sample posts)."""
    init_db(posts)
    click.echo(f"Initialized the database with {posts} posts.")


def init_app(app: Flask) -> None:
    """Register the connection teardown and the ``init-db`` command with ``app``."""
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
