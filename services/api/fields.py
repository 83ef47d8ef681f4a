"""Bounded strings the request bodies share, with the domain's own limits (longer input is a
400 before any decision is made)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain.refs import MAX_TEXT, MAX_TITLE

#: a node code (statistics-bureau codes are 12 digits; grid and unit codes are ours)
NodeCode = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
#: a name or a title
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE)]
#: a note, a reason, a description
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
