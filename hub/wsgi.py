"""The WSGI entry point of an installed hub: ``gunicorn hub.wsgi:app``.

It lives in the package (not only beside the checkout) so a hub installed from a wheel — the
container image, a systemd host — serves with the same command. Configuration comes from the
environment, as documented in the README.
"""

from hub.app import create_app

app = create_app()
