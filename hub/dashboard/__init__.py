"""The agency dashboard at ``/dashboard/``: every client at a glance, served by the hub itself.

Server-rendered Jinja, SVG charts drawn on the server and one small script of our own (copy
buttons, times in the viewer's zone); no build step. Everything except the sign-in page needs
an account (``hub users create``). A client viewer sees one tenant: every view takes the
tenant's slug from the URL and :func:`hub.dashboard.access.client` answers 404 for any other,
so another client's page looks exactly like one that does not exist.

Pages: ``views/portfolio.py`` (all clients, what needs attention), ``views/client.py``,
``views/journey.py`` (timeline, search), ``views/preview.py`` (``hub flow preview`` in the
browser), ``views/signin.py``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from hub.dashboard.site import blueprint
from hub.ingress import NoSessionOnWebhooks

# private data, our own script and styles only; the preview's e-mail is an iframe srcdoc with
# an empty sandbox (no script, no forms, no same-origin), whose images may come from anywhere
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class _SessionInterface(NoSessionOnWebhooks):
    """The session cookie is ``Secure`` whenever the request came over HTTPS (directly, or
    through a proxy trusted with ``HUB_TRUSTED_PROXIES``), not only when configured so; none
    is opened for a webhook (see ``NoSessionOnWebhooks``)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def init_app(app: Flask, hub: Any) -> None:
    """Register the blueprint with its session, CSRF and proxy settings on ``app``."""
    from datetime import timedelta

    from hub.dashboard import views  # noqa: F401 - the views attach themselves to the blueprint

    public_https = (hub.settings.public_url or "").startswith("https://")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public_https,
        SESSION_COOKIE_NAME="hub_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # the ingress and tracking routes take POSTs from platforms: CSRF is checked only on
        # the dashboard's forms (see _guard), never app-wide
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as the session it belongs to
    )
    app.session_interface = _SessionInterface()
    proxies = hub.settings.trusted_proxies
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    CSRFProtect(app)
    app.register_blueprint(blueprint)


@blueprint.before_request
def _guard() -> Any:
    """Every POST carries a CSRF token; every page but sign-in needs an account."""
    from flask import current_app

    from hub.dashboard.access import load_user, sign_in_redirect

    g.user = load_user()  # first: a refused form's error page still shows who is signed in
    if request.method == "POST":
        current_app.extensions["csrf"].protect()
    if request.endpoint in ("dashboard.sign_in", "dashboard.static"):
        return None
    if g.user is None:
        return sign_in_redirect()
    return None


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"  # other people's customers
    return response


@blueprint.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Any:
    from hub.dashboard.access import error_page

    return error_page(
        400,
        "This form has expired or did not come from this site. "
        "Go back, reload the page and send it again.",
    )


@blueprint.errorhandler(404)
def _not_found(exc: Exception) -> Any:
    from hub.dashboard.access import error_page

    return error_page(404, "There is no such page, or it belongs to another account.")


@blueprint.app_template_filter("when")
def _when(value: Any, zone: Any) -> Any:
    from hub.dashboard.formatting import when

    return when(value, zone)


@blueprint.app_template_filter("money")
def _money(minor: Any, currency: Any, locale: str) -> str:
    from hub.dashboard.formatting import money

    return money(minor, currency, locale)


@blueprint.app_template_filter("percent")
def _percent(value: Any, locale: str) -> str:
    from hub.dashboard.formatting import percent

    return percent(value, locale)


@blueprint.app_template_filter("number")
def _number(value: int, locale: str) -> str:
    from hub.dashboard.formatting import number

    return number(value, locale)


@blueprint.context_processor
def _charts() -> dict[str, Any]:
    from hub.dashboard.charts import bars, sparkline

    return {"spark": sparkline, "bars": bars}
