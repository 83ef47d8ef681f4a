"""The bars of issues #6 and #20 (the write path), as ``(figure, against, target, op)`` specs evaluated by ``bench.run``.

- ``against`` is another figure's name: the ratio ``median(figure) / median(against)`` must be
  ``>= target`` (``"ge"``) or ``<= target`` (``"le"``);
- ``against`` is ``None``: the target is absolute, in ``figure``'s own unit.

Figure names are benchmark names, or ``"<benchmark>.<suffix>"`` for what a benchmark attaches
with ``ctx.report`` (e.g. ``"http.commands_32c.p99_ms"``). A spec whose figures were not
measured in a run is shown as pending. The ``store.*``, ``http.*``, ``stats.*``,
``projection.*`` and ``chain.*`` names are the ones our benchmarks in ``bench/ours/`` register.
"""

from __future__ import annotations

from typing import Literal

Op = Literal["ge", "le"]
RatioSpec = tuple[str, str | None, float, Op]

RATIOS: list[RatioSpec] = [
    # single-event appends, 8 writers on distinct streams over 300 community nodes
    ("store.append_single_8w", "raw.insert_1row_8c", 0.6, "ge"),
    ("store.append_single_8w", "messagedb.write_8c", 2.0, "ge"),
    ("store.append_single_8w", "eventsourcing.append_existing_8t", 8.0, "ge"),
    # #20: the eventsourcing library with its database functions on
    ("store.append_single_8w", "eventsourcing.append_existing_8t_dbfn", 2.0, "ge"),
    # batches of 100 events per stream (8 writers; raw.unnest100_1c is also measured)
    ("store.append_batch100_8w", "raw.unnest100_8c", 0.5, "ge"),
    # HTTP commands: POST /v1/issues with a JWT, 32 clients
    ("http.commands_32c", "litestar.hello_32c", 0.25, "ge"),
    ("http.commands_32c.p99_ms", None, 50.0, "le"),
    ("http.commands_32c.errors", None, 0.0, "le"),
    # stats read p99 at 1M events vs 10k events
    ("stats.read_1m.p99_ms", "stats.read_10k.p99_ms", 1.5, "le"),
    ("stats.read_1m.p99_ms", None, 10.0, "le"),
    # absolute bars
    # (#20 raised them: rebuild 50,000/s, verification 200,000/s, lag p99 50 ms)
    ("projection.rebuild", None, 50_000.0, "ge"),
    ("chain.verify", None, 200_000.0, "ge"),
    ("projection.lag_half_load.p99_ms", None, 50.0, "le"),
]
