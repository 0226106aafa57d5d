"""Production entry point: ``gunicorn wsgi:app``. Configuration comes from the environment."""

from hub.app import create_app

app = create_app()
