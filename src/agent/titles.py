"""A new thread's title without a model: its first message, cut short at a word boundary.

The title a turn falls back on when no title model answers, and the one a thread gets when its
client leaves before the answer's end; the offline model shortens what it quotes the same way.
"""

from __future__ import annotations

TITLE_MAX_CHARS = 40
TRAILING_PUNCTUATION = " \t.,;:!?-\u2013\u2014\u2026"


def generate_offline_title(first_message: str) -> str:
    """Return a thread title: the message cut at a word boundary to at most 40 characters."""
    title = shorten(first_message, TITLE_MAX_CHARS)
    return title[0].upper() + title[1:] if title else "New chat"


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary to at most `limit` characters, with "…"."""
    text = " ".join(text.split())
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)  # a space at index limit - 1 or before
        head = text[:cut] if cut > 0 else text[: limit - 1]
        return head.rstrip(TRAILING_PUNCTUATION) + "…"
    return text.rstrip(TRAILING_PUNCTUATION)
