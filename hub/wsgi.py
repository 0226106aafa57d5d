"""The WSGI entry point of an installed hub: ``gunicorn hub.wsgi:app``.

It lives in the package (not only beside the checkout) so a hub installed from a wheel — the
container image, a systemd host — serves with the same command. Configuration comes from the
environment, as documented in the README.

The web process never starts a Redis: with several gunicorn workers (and restarts of each) a
server owned by one of them would die with it. Without ``REDIS_URL`` it attaches to the
embedded Redis that ``hub worker``/``hub run`` keep under ``HUB_VAR_DIR`` on this machine, and
``/readyz`` answers 503 with the reason while there is none.
"""

import logging

from hub.app import create_app
from hub.migrations import SchemaMismatch

try:
    app = create_app()
except SchemaMismatch as exc:
    # gunicorn prints an AppImportError's message without a traceback and stops the master,
    # instead of booting workers that would refuse the same database again and again
    from gunicorn.errors import AppImportError

    raise AppImportError(f"abandonment-hub: {exc.format_message()}") from None
if app.extensions["hub"].settings.redis_url is None:
    logging.getLogger("hub").warning(
        "REDIS_URL is not set: using the embedded Redis of `hub worker` under %s if one runs "
        "(production: set REDIS_URL)",
        app.extensions["hub"].settings.var_dir,
    )
