"""``gunicorn wsgi:app`` from a checkout; the installed package serves ``hub.wsgi:app``."""

from hub.wsgi import app

__all__ = ["app"]
