"""Bounded strings the request bodies share, with the domain's own limits (longer input is a
400 before any decision is made)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, TypeAlias

import msgspec

from domain.finding import CATEGORIES
from domain.finding import STATUSES as FINDING_STATUSES
from domain.hierarchy import NodeKind
from domain.issue import SATISFACTIONS, SOURCES
from domain.issue import STATUSES as ISSUE_STATUSES
from domain.member import ACTIVE, DEREGISTERED, ERASED
from domain.pairing import ACTIVE as PAIRING_ACTIVE
from domain.pairing import RATINGS, TERMINATED
from domain.refs import MAX_TEXT, MAX_TITLE

PAIRING_STATUSES = (PAIRING_ACTIVE, TERMINATED)
MEMBER_STATUSES = (ACTIVE, DEREGISTERED, ERASED)

#: a node code (statistics-bureau codes are 12 digits; grid and unit codes are ours)
NodeCode = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
#: a name or a title
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE)]
#: a note, a reason, a description
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


def closed_set(values: Iterable[str], description: str | None = None) -> msgspec.Meta:
    """The metadata of a string from a closed set: documented as an enum.

    Membership is the domain's decision (a value outside the set is its 422 with its own
    message), so the type stays ``str`` at runtime and the set shows in the document only.
    """
    return msgspec.Meta(
        description=description, extra_json_schema={"extra": {"enum": list(values)}}
    )


NodeKindName: TypeAlias = Annotated[
    str, closed_set([k.value for k in NodeKind], "The kind of node")
]
PairingRating: TypeAlias = Annotated[str, closed_set(RATINGS, "excellent, good, fair or poor")]
PairingStatus: TypeAlias = Annotated[str, closed_set(PAIRING_STATUSES)]
IssueStatus: TypeAlias = Annotated[str, closed_set(ISSUE_STATUSES)]
IssueSource: TypeAlias = Annotated[str, closed_set(SOURCES, "Where the issue came from")]
Satisfaction: TypeAlias = Annotated[
    str, closed_set(SATISFACTIONS, "The resident's satisfaction (回访)")
]
FindingStatus: TypeAlias = Annotated[str, closed_set(FINDING_STATUSES)]
FindingCategory: TypeAlias = Annotated[
    str, closed_set(CATEGORIES, "immediate (立行立改), deadline (限期整改), long_term (长期坚持)")
]
FindingWarning: TypeAlias = Annotated[str, closed_set(("none", "green", "yellow", "red"))]
MemberStatus: TypeAlias = Annotated[str, closed_set(MEMBER_STATUSES)]
