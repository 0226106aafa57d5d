"""``/api/v1/docs``: the OpenAPI document as one plain HTML page.

Rendered on the server from the document itself, with no script from elsewhere: a browser
that reaches only the hub (an intranet, a strict content security policy) still shows it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template_string

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ info.title }} API {{ info.version }}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2rem}h3{margin-bottom:.2rem}td{padding:0 .6rem 0 0}</style>
</head><body>
<h1>{{ info.title }} API {{ info.version }}</h1>
<p>Every request sends <code>Authorization: Bearer &lt;key&gt;</code>. Errors are
<code>{"code", "message", "field"}</code>. Machine-readable:
<a href="{{ prefix }}/openapi.json">openapi.json</a>.</p>
{% for path, operations in paths.items() %}{% for method, op in operations.items() %}
{% if method in ("get", "post", "put", "patch", "delete") %}
<h3><code>{{ method.upper() }} {{ path }}</code></h3>
<p>{{ op.summary or "" }} {{ op.description or "" }}</p>
{% if op.parameters %}<table>{% for p in op.parameters %}
<tr><td><code>{{ p.name }}</code></td><td>{{ p["in"] }}</td>
<td>{{ p.schema.type if p.schema else "" }}{{ " (required)" if p.required else "" }}</td>
<td>{{ p.description or "" }}</td></tr>{% endfor %}</table>{% endif %}
<p>Answers: {{ op.responses.keys() | join(", ") }}</p>
{% endif %}{% endfor %}{% endfor %}
</body></html>"""


def register(app: Flask, api: Any, prefix: str) -> None:
    @app.get(f"{prefix}/docs")
    def api_docs() -> str:
        spec = api.spec.to_dict()
        return render_template_string(PAGE, info=spec["info"], paths=spec["paths"], prefix=prefix)
