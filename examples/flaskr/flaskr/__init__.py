"""flaskr: a small blog in the Flask tutorial's layout, the lab's example of a real app.

``create_app()`` is the factory (``flask --app flaskr run``, or the lab's
``wsgi = "flaskr:create_app()"``). It keeps its SQLite database in the instance folder
(``instance/flaskr.sqlite``), created by ``flask --app flaskr init-db``. Pages are
rendered from Jinja templates (``/``, ``/<id>``); ``/api/posts`` is a JSON API.
Configuration comes from a mapping plus ``FLASK_*`` environment variables
(``FLASK_SECRET_KEY``, ``FLASK_DATABASE``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the app.

    :param test_config: settings that replace the defaults and the environment (tests).
    :return: the Flask app, with the blog pages, the JSON API and the ``init-db`` command.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"),
        MAX_CONTENT_LENGTH=64 * 1024,  # the API takes small JSON bodies only
        POSTS_PER_PAGE=20,
    )
    if test_config is None:
        app.config.from_prefixed_env()  # FLASK_SECRET_KEY, FLASK_DATABASE, ...
    else:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    from . import api, blog, db

    db.init_app(app)
    app.register_blueprint(blog.bp)
    app.register_blueprint(api.bp)
    return app
