"""OR and AND of one-bit Amaranth values, for the wide reductions the PE and the array build."""

from __future__ import annotations

__all__ = ["any_of", "all_of"]


def any_of(terms) -> object:
    """OR of one-bit terms (``0`` for none)."""
    out = 0
    for term in terms:
        out = out | term
    return out


def all_of(terms) -> object:
    """AND of one-bit terms (``1`` for none)."""
    out = 1
    for term in terms:
        out = out & term
    return out
