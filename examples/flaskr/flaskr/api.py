"""The JSON API: list posts, read one, create one.

Bodies are small JSON objects (``MAX_CONTENT_LENGTH``), every field is bounded, and a
POST from another origin (a browser on another site) is refused.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request

from .db import get_db

bp = Blueprint("api", __name__, url_prefix="/api")
#: Longest title and body accepted (characters).
MAX_TITLE = 200
MAX_BODY = 10_000


def _post_dict(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "body": row["body"], "author": row["name"],
            "created": str(row["created"])}


@bp.get("/posts")
def list_posts():
    """The latest posts as JSON: ``{"posts": [...], "count": n}``."""
    rows = get_db().execute(
        "SELECT p.id, title, body, created, name FROM post p JOIN author a ON p.author_id = a.id"
        " ORDER BY created DESC, p.id DESC LIMIT ?",
        (current_app.config["POSTS_PER_PAGE"],),
    ).fetchall()
    return jsonify(posts=[_post_dict(row) for row in rows], count=len(rows))


@bp.get("/posts/<int:post_id>")
def get_post(post_id: int):
    """One post as JSON, or a 404 JSON error."""
    row = get_db().execute(
        "SELECT p.id, title, body, created, name FROM post p JOIN author a ON p.author_id = a.id WHERE p.id = ?",
        (post_id,),
    ).fetchone()
    if row is None:
        return jsonify(error=f"no post {post_id}"), 404
    return jsonify(_post_dict(row))


@bp.post("/posts")
def create_post():
    """Create a post from ``{"title", "body", "author"?}``; 201 with the post, 400 naming a bad field."""
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
        abort(403, "cross-origin POST refused")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="the body must be a JSON object with title and body"), 400
    title, body, author = data.get("title"), data.get("body"), data.get("author", "ada")
    for name, value, limit in (("title", title, MAX_TITLE), ("body", body, MAX_BODY), ("author", author, 40)):
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            return jsonify(error=f"{name} must be a non-empty string of at most {limit} characters"), 400
    db = get_db()
    found = db.execute("SELECT id FROM author WHERE name = ?", (author,)).fetchone()
    if found is None:
        return jsonify(error=f"unknown author {author!r}"), 400
    cursor = db.execute("INSERT INTO post (author_id, title, body) VALUES (?, ?, ?)", (found["id"], title, body))
    db.commit()
    row = db.execute(
        "SELECT p.id, title, body, created, name FROM post p JOIN author a ON p.author_id = a.id WHERE p.id = ?",
        (cursor.lastrowid,),
    ).fetchone()
    return jsonify(_post_dict(row)), 201
