"""Materialised paths of the hierarchy: ``/<root id>/<child id>/…/``.

A node's subtree is every path that starts with its own. Because every path ends in ``/``
and ``0`` is the next character after it, the subtree is also the half-open range
``[path, path[:-1] + "0")``, which a btree index on ``nodes.path`` answers with one range
scan. Every subtree query uses these bounds.
"""

from __future__ import annotations


def subtree_end(path: str) -> str:
    """The first path after ``path``'s subtree (exclusive upper bound)."""
    return path[:-1] + "0"


def subtree_bounds(path: str) -> tuple[str, str]:
    """``(lo, hi)``: the subtree of ``path`` is ``lo <= p < hi``."""
    return path, subtree_end(path)
