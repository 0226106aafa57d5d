"""Signing in and out. Attempts are counted per address and per account in Redis
(:mod:`hub.dashboard.ratelimit`) before the password is even looked at."""

from __future__ import annotations

from typing import Any

import redis
from flask import g, redirect, render_template, request, session, url_for

from hub.current import current_hub
from hub.dashboard.access import safe_next
from hub.dashboard.accounts import authenticate, normalize_email
from hub.dashboard.ratelimit import SignInLimiter
from hub.dashboard.site import blueprint


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.user is not None:
            return redirect(target)
        return render_template("dashboard/sign_in.html", next=target, email="")
    hub = current_hub()
    email = normalize_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    limiter = SignInLimiter(hub.queues.connection, hub.queues.namespace)
    try:
        over = limiter.hit(request.remote_addr or "unknown", email)
    except redis.RedisError:  # cannot count: refuse rather than allow unlimited guessing
        return _form(target, email, "Signing in is unavailable right now; try again soon.", 503)
    if over:
        return _form(target, email, "Too many attempts. Wait 15 minutes, then try again.", 429)
    user = authenticate(hub.store, email, password)
    if user is None:
        return _form(target, email, "The e-mail address or the password is wrong.", 401)
    limiter.clear_account(email)
    session.clear()  # a new session id for the signed-in state (no fixation)
    session.permanent = True
    session["user"], session["stamp"] = user.id, user.session_stamp
    return redirect(target)


def _form(target: str, email: str, error: str, status: int) -> Any:
    page = render_template("dashboard/sign_in.html", next=target, email=email, error=error)
    return page, status


@blueprint.post("/sign-out")
def sign_out() -> Any:
    session.clear()
    return redirect(url_for("dashboard.sign_in"))
