"""WSGI entry point: ``labapp.wsgi:app`` for Gunicorn, uWSGI and the dev server."""

from labapp import create_app

app = create_app()
