"""Suggestions for misspelt names in configuration errors ("did you mean 'template'?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The name among ``choices`` that ``word`` most likely misspells, if any is close.

    difflib's default cut-off (0.6) catches typos and transpositions (``templte``,
    ``remider``) without suggesting unrelated names.
    """
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` to append to an error message, or ``""``."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""
