"""Shared layouts: the default e-mails extend ``_layouts/``, and a tenant can restyle them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.plugins import load_plugins
from hub.templates import DEFAULT_DIR, Renderer, TemplateMissing

CONTEXT: dict[str, Any] = {
    "customer": {"first_name": "<Jane>"},
    "cart": {"total_display": "10 €", "items": [{"name": "Socks & Co", "quantity": 2}]},
    "offer": None,
    "recovery_url": "http://hub.test/r/x",
    "unsubscribe_url": "http://hub.test/u/x",
    "tenant": {"name": "Acme", "support": None},
}

# a whole layout in a few lines: the blocks the language layouts and the messages fill
PLAIN_LAYOUT = (
    '<main lang="{{ html_lang }}">{% block greeting %}{% endblock %}|{% block intro %}'
    "{% endblock %}|{% block button %}{% endblock %}|{% block unsubscribe %}{% endblock %}</main>\n"
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def renderer(config_dir: Path) -> Renderer:
    return Renderer(config_dir, load_plugins())


def test_a_layout_in_the_config_dir_restyles_the_default_messages(
    renderer: Renderer, config_dir: Path
) -> None:
    _, stock = renderer.render("acme", "reminder", "email", ["de"], CONTEXT)
    assert stock["html"].startswith("<!doctype html>")
    write(config_dir / "templates" / "_layouts" / "email.html", PLAIN_LAYOUT)
    _, parts = renderer.render("acme", "reminder", "email", ["de"], CONTEXT)
    # the German words and the reminder's own come through the tenant's markup, still escaped
    assert parts["html"] == (
        '<main lang="de">Hallo &lt;Jane&gt;,|in Ihrem Warenkorb bei Acme liegen noch Artikel im '
        "Wert von <strong>10 €</strong>. Wir haben alles für Sie gespeichert.|Zurück zum "
        "Warenkorb|Keine Erinnerungen mehr erhalten</main>\n"
    )
    assert parts["txt"] == stock["txt"]  # only the HTML layout was replaced


def test_a_tenants_own_layout_wins_and_stays_with_that_tenant(
    renderer: Renderer, config_dir: Path
) -> None:
    write(config_dir / "templates" / "_layouts" / "email.html", "shared " + PLAIN_LAYOUT)
    write(config_dir / "templates" / "acme" / "_layouts" / "email.html", "acme " + PLAIN_LAYOUT)
    for _ in range(2):  # environments are cached: the second round must not mix them up
        _, acme = renderer.render("acme", "nudge", "email", ["en"], CONTEXT)
        _, other = renderer.render("globex", "nudge", "email", ["en"], CONTEXT)
        assert acme["html"].startswith('acme <main lang="en">Hi &lt;Jane&gt;,|')
        assert other["html"].startswith('shared <main lang="en">Hi &lt;Jane&gt;,|')


def test_a_tenants_own_template_extends_the_shared_layout(
    renderer: Renderer, config_dir: Path
) -> None:
    """A language the hub does not ship: the tenant fills the blocks of the base layout."""
    folder = config_dir / "templates" / "acme" / "winback"
    write(
        folder / "email.es.html",
        '{% extends "_layouts/email.html" %}\n'
        "{% block greeting %}Hola {{ customer.first_name }},{% endblock %}\n"
        "{% block quantity %}Cant.: {{ item.quantity }}{% endblock %}\n"
        "{% block button %}Volver al carrito{% endblock %}\n",
    )
    write(
        folder / "email.es.txt",
        '{% extends "_layouts/email.txt" %}\n{% block greeting %}Hola {{ customer.first_name }},'
        "{% endblock %}\n{% block link %}Tu carrito: {{ recovery_url }}{% endblock %}\n",
    )
    used, parts = renderer.render("acme", "winback", "email", ["es"], CONTEXT)
    assert used == "es"
    html, text = parts["html"], parts["txt"]
    assert '<html lang="es">' in html and "Hola &lt;Jane&gt;," in html
    assert "Socks &amp; Co" in html and "Cant.: 2" in html and ">Volver al carrito</a>" in html
    assert text.startswith("Hola <Jane>,\n\n")
    assert "- 2 × Socks & Co\n" in text and "Tu carrito: http://hub.test/r/x" in text


def test_the_layouts_folder_is_not_a_template(renderer: Renderer, config_dir: Path) -> None:
    write(config_dir / "templates" / "_layouts" / "email.en.html", "{{ 1 }}")
    assert (DEFAULT_DIR / "_layouts" / "email.en.html").is_file()
    assert not renderer.has_template("acme", "_layouts")
    with pytest.raises(TemplateMissing):
        renderer.render("acme", "_layouts", "email", ["en"], CONTEXT)
