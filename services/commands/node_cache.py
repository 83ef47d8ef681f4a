"""Directory look-ups (node codes and ids → nodes) for a few seconds, per process, so a
command that names a node decides without a read round trip.

Bounded as ``ScopeCache`` is: an entry lives ``ttl`` seconds, and node events committed in
this process clear the cache (a move changes paths, a close closes a subtree). A node closed
in another process may thus still be named for ``ttl`` seconds; appends on its chain or in a
scope under it are refused by the database all the same (the closed-subtree check runs with
every append). Entries are per root tenant, as row-level security shows them.
"""

from __future__ import annotations

import time
from uuid import UUID

from infra.directory import DirectoryNode


class NodeCache:
    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._by_code: dict[str, tuple[float, DirectoryNode]] = {}
        self._by_id: dict[UUID, tuple[float, DirectoryNode]] = {}

    def by_code(self, root_id: UUID, code: str) -> DirectoryNode | None:
        return self._fresh(self._by_code.get(code), root_id)

    def by_id(self, root_id: UUID, node_id: UUID) -> DirectoryNode | None:
        return self._fresh(self._by_id.get(node_id), root_id)

    def put(self, node: DirectoryNode, code: str | None = None) -> None:
        """Keep ``node``, also under ``code`` (the current or a former code it was found by)."""
        if len(self._by_id) >= self.max_entries or len(self._by_code) >= self.max_entries:
            self.clear()
        entry = (time.monotonic() + self.ttl, node)
        self._by_id[node.id] = entry
        self._by_code[code or node.code] = entry

    def clear(self) -> None:
        self._by_code.clear()
        self._by_id.clear()

    @staticmethod
    def _fresh(entry: tuple[float, DirectoryNode] | None, root_id: UUID) -> DirectoryNode | None:
        if entry is None or entry[0] < time.monotonic() or entry[1].root_id != root_id:
            return None
        return entry[1]
