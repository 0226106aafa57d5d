"""``hub flow preview`` in the browser: paste or upload an event, see the matched flow, each
step's fire time in the client's zone, the chosen channel and the rendered message.

The work is :func:`hub.flowcli.preview_events`, the same code the command runs; this page
only reads the form and draws the result. Nothing is stored or sent.

The rendered e-mail is not inlined (``srcdoc``): a ``srcdoc`` frame inherits the dashboard's
strict Content-Security-Policy, which blocks the inline styles every e-mail is made of. It is
kept in Redis for :data:`MAIL_SECONDS` under a random token bound to the account and the
client that previewed it, and served by :func:`preview_mail` with a policy of its own: inline
styles and remote images, no script, no form, no plugin, and a ``sandbox`` both in the policy
and on the ``<iframe>``, so the mail runs in an opaque origin without the dashboard's cookies.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import click
import redis
from flask import Response, abort, g, redirect, render_template, request, url_for

from hub.current import current_hub
from hub.dashboard.access import client, clients
from hub.dashboard.site import blueprint
from hub.engine import Engine
from hub.flowcli import history, preview_events, read_events

MAX_EVENT_BYTES = 512 * 1024
MAIL_SECONDS = 15 * 60  # long enough to read a preview, short for a page nobody reloads
MAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; font-src data: https:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox"
)


@blueprint.get("/preview")
def preview_pick() -> Any:
    """Pick a client: a GET form from any page lands here and goes on to its preview."""
    slug = request.args.get("client")
    if slug:
        return redirect(url_for("dashboard.preview", slug=client(slug).slug))
    return render_template("dashboard/preview_pick.html", clients=clients())


@blueprint.route("/clients/<slug>/preview", methods=["GET", "POST"])
def preview(slug: str) -> Any:
    found = client(slug)
    form = {"event": "", "source": ""}
    results, error = None, None
    if request.method == "POST":
        form["source"] = request.form.get("source", "")
        upload = request.files.get("file")
        raw = upload.read(MAX_EVENT_BYTES + 1) if upload and upload.filename else b""
        raw = raw or request.form.get("event", "").encode()
        form["event"] = raw.decode(errors="replace")
        if len(raw) > MAX_EVENT_BYTES:
            error = f"The event is larger than {MAX_EVENT_BYTES // 1024} KiB."
        elif not raw.strip():
            error = "Paste an event or choose a file first."
        elif found.tenant is None:
            error = "This client's tenant file has errors; fix them before previewing."
        else:
            results, error = _run(found.tenant, raw, form["source"] or None)
    status = 400 if error else 200
    page = render_template(
        "dashboard/preview.html",
        client=found,
        form=form,
        results=results,
        error=error,
        mails=_keep_mails(found.slug, results or []),
    )
    return page, status


@blueprint.get("/clients/<slug>/preview/mail/<token>")
def preview_mail(slug: str, token: str) -> Any:
    """One rendered e-mail of a preview, for its ``<iframe>``: only to the account that made
    the preview, under the client it was made for; 404 for anyone and anything else."""
    found = client(slug)
    try:
        raw = current_hub().queues.connection.get(_mail_key(token))
    except redis.RedisError:
        raw = None
    kept = json.loads(raw) if raw else None
    if not kept or kept["user"] != g.user.id or kept["tenant"] != found.slug:
        abort(404)
    response = Response(kept["html"], mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_CSP
    return response


def _keep_mails(slug: str, results: list[Any]) -> dict[tuple[int, int], str]:
    """Store each rendered e-mail of ``results`` for :func:`preview_mail`; the URL of each,
    keyed by (result, step). Without Redis the page falls back to ``srcdoc`` (no styles)."""
    urls: dict[tuple[int, int], str] = {}
    mails = [
        ((n, step.index), step.choice.parts["html"])
        for n, result in enumerate(results)
        for step in (result.steps or [])
        if not step.skipped and step.choice and step.choice.parts.get("html")
    ]
    if not mails:
        return urls
    hub = current_hub()
    try:
        pipe = hub.queues.connection.pipeline(transaction=False)
        for key, html in mails:
            token = secrets.token_urlsafe(24)
            kept = {"user": g.user.id, "tenant": slug, "html": html}
            pipe.set(_mail_key(token), json.dumps(kept), ex=MAIL_SECONDS)
            urls[key] = url_for("dashboard.preview_mail", slug=slug, token=token)
        pipe.execute()
    except redis.RedisError:
        return {}
    return urls


def _mail_key(token: str) -> str:
    return f"{current_hub().queues.namespace}dashboard:preview-mail:{token}"


def _run(tenant: Any, raw: bytes, source: str | None) -> tuple[list[Any] | None, str | None]:
    hub = current_hub()
    try:
        events = read_events(hub, tenant, raw, Path("event"), "event", source)
        with history(hub) as on_history:
            return preview_events(Engine(on_history), tenant, events), None
    except click.ClickException as exc:  # the command's own messages, naming the mistake
        return None, exc.format_message()
