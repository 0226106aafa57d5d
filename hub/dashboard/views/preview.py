"""``hub flow preview`` in the browser: paste or upload an event, see the matched flow, each
step's fire time in the client's zone, the chosen channel and the rendered message.

The work is :func:`hub.flowcli.preview_events`, the same code the command runs; this page
only reads the form and draws the result. Nothing is stored or sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from flask import redirect, render_template, request, url_for

from hub.current import current_hub
from hub.dashboard.access import client, clients
from hub.dashboard.site import blueprint
from hub.engine import Engine
from hub.flowcli import history, preview_events, read_events

MAX_EVENT_BYTES = 512 * 1024


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
        "dashboard/preview.html", client=found, form=form, results=results, error=error
    )
    return page, status


def _run(tenant: Any, raw: bytes, source: str | None) -> tuple[list[Any] | None, str | None]:
    hub = current_hub()
    try:
        events = read_events(hub, tenant, raw, Path("event"), "event", source)
        with history(hub) as on_history:
            return preview_events(Engine(on_history), tenant, events), None
    except click.ClickException as exc:  # the command's own messages, naming the mistake
        return None, exc.format_message()
