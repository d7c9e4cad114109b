"""The blog's pages, rendered from templates: the latest posts, and one post."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from .db import get_db

bp = Blueprint("blog", __name__)


@bp.get("/")
def index() -> str:
    """The latest posts with their authors (at most ``POSTS_PER_PAGE``)."""
    posts = get_db().execute(
        "SELECT p.id, title, body, created, name FROM post p JOIN author a ON p.author_id = a.id"
        " ORDER BY created DESC, p.id DESC LIMIT ?",
        (current_app.config["POSTS_PER_PAGE"],),
    ).fetchall()
    return render_template("blog/index.html", posts=posts)


@bp.get("/<int:post_id>")
def post(post_id: int) -> str:
    """One post, or 404."""
    row = get_db().execute(
        "SELECT p.id, title, body, created, name FROM post p JOIN author a ON p.author_id = a.id WHERE p.id = ?",
        (post_id,),
    ).fetchone()
    if row is None:
        abort(404, f"Post id {post_id} doesn't exist.")
    return render_template("blog/post.html", post=row)
