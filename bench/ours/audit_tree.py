"""The per-root transparency tree (issue #19): append cost, proof sizes, bundle verification.

* ``audit_tree.append_with_tree_ratio``: ``store``'s append (1 event per request
  transaction, 8 writers, 300 community nodes, everything on) with the tree builder
  (``AuditTreeProjection`` under a ``ProjectionRunner`` in a process of its own, as the
  projector runs it) following the same database, divided by the rate without it; windows
  alternate. The append transaction itself is unchanged by the tree (same statements), so
  what the ratio shows is the builder's share of the machine's CPU and disk.
  ``.plain`` / ``.with_tree``: the two rates; ``.tree_lag_events``: the most events not yet
  in the tree when writers stopped; ``.builder_cpu_per_event``: the builder process's CPU
  per event it appended to the tree (its Python side; its SQL runs in PostgreSQL).
* ``audit_tree.bundle_verify``: ``civic_verify.verify_bundle`` of the evidence bundle of a
  county of 10,000 events (100,000 in a full run) built by ``infra.audit.evidence`` from the
  database (no HTTP): events/s of the offline verifier. ``.bundle_bytes``: the zip's size.
* ``audit_tree.proof_hashes_10k`` / ``_1m``: hashes in an inclusion proof (leaf n/3) plus
  a consistency proof (n/3 → n) of a tree of 10,000 / 1,000,000 leaves; ``.bytes``: their
  size. 10k is read from the database's stored tree (the HTTP handler's query);
  1M is computed on the tree alone, in memory (no database: loading a million events
  here would take longer than the whole suite), and both proofs are verified.

Standalone: ``python -m bench.ours.audit_tree`` runs ``bench.run --only audit_tree``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.cpu import process_cpu_seconds
from bench.ours.store import _appends, _tree
from bench.payload import EVENT_TYPE, event_json
from bench.registry import Context, benchmark, group_fixture
from civic_verify.bundle import verify_bundle
from civic_verify.hashing import sha256
from civic_verify.tlog import (
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    range_nodes,
    resolve,
    verify_consistency,
    verify_inclusion,
)
from infra import directory, migrator
from infra.audit.checkpoints import take_checkpoint
from infra.audit.evidence import bundle_chunks
from infra.audit.signing import Ed25519Signer, b64, key_id
from infra.audit.tree import consistency_proof, inclusion_proof, tree_state
from infra.chain import Sha256Chain
from infra.database import create_pool, scoped_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, TxAppender
from projections.audit_tree import AuditTreeProjection
from projections.runner import ProjectionRunner

GROUP = "audit_tree"


@group_fixture(GROUP)
async def _schema(ctx: Context) -> AsyncIterator[None]:
    conn = await ctx.connect()
    try:
        await migrator.apply(conn)
        ctx.state["communities"] = await _tree(conn)
    finally:
        await conn.close()
    yield


@benchmark(
    "audit_tree.append_with_tree_ratio",
    GROUP,
    "x",
    higher_is_better=True,
    description="append rate with the tree builder running / without (8 writers, 1 event/tx)",
    timeout=900,
)
async def append_with_tree_ratio(ctx: Context) -> float:
    """Windows of ``store``'s append alternate without and with the builder (its own
    process, as the projector runs it), so load from elsewhere hits both alike."""
    plain: list[float] = []
    with_tree: list[float] = []
    lags: list[float] = []
    cpu: list[float] = []
    for _ in range(ctx.scaled(3, 2)):
        plain.append(await _appends(ctx, 1, cpu=False))
        builder = await _start_builder(ctx)
        try:
            async with await ctx.pool(1) as pool:
                await _caught_up(pool)  # the plain window's events first: measure following
                async with pool.acquire() as conn:
                    before = await _tree_size(conn), process_cpu_seconds(builder.pid)
                with_tree.append(await _appends(ctx, 1, cpu=False))
                async with pool.acquire() as conn:
                    lags.append(float(await _tree_lag(conn)))
                await _caught_up(pool)
                async with pool.acquire() as conn:
                    built = await _tree_size(conn) - before[0]
                cpu.append((process_cpu_seconds(builder.pid) - before[1]) / max(1, built))
        finally:
            await _stop_builder(builder)
    ctx.report("plain", sorted(plain)[len(plain) // 2], "events/s")
    ctx.report("with_tree", sorted(with_tree)[len(with_tree) // 2], "events/s")
    ctx.report("tree_lag_events", max(lags), "count")
    ctx.report("builder_cpu_per_event", 1e6 * sorted(cpu)[len(cpu) // 2], "us")
    return sorted(w / p for w, p in zip(with_tree, plain, strict=True))[len(plain) // 2]


async def _tree_size(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval("SELECT coalesce(sum(size), 0)::bigint FROM audit_trees")
    return n


async def _start_builder(ctx: Context) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ours.audit_tree", "--builder", ctx.database_url
    )


async def _stop_builder(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _run_builder(url: str) -> None:
    """The tree builder alone, as the projector process runs it, until SIGTERM."""
    import signal

    workers = await create_pool(url, min_size=1, max_size=4)
    runner = ProjectionRunner(workers, [AuditTreeProjection()], poll_interval=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await runner.start()
    try:
        await stop.wait()
    finally:
        await runner.stop()
        await workers.close()


async def _caught_up(pool: asyncpg.Pool, runner: ProjectionRunner | None = None) -> None:
    async with pool.acquire() as conn:
        for _ in range(12_000):  # bounded: 120 s
            if await _tree_lag(conn) == 0:
                return
            if runner is not None:
                runner.poke()
            await asyncio.sleep(0.01)
    raise AssertionError("the tree builder did not catch up within 120 s")


async def _tree_lag(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval(
        "SELECT (SELECT count(*) FROM events) - coalesce((SELECT sum(size) FROM audit_trees), 0)"
    )
    return n


async def _county_with_events(ctx: Context, events: int) -> tuple[str, int]:
    """A county of its own with ``events`` events, its tree built; (code, events)."""
    key = f"bundle_{events}"
    if key in ctx.state:
        return ctx.state[key]
    conn = await ctx.connect()
    try:
        codes = await _tree(conn)
        store = EventStore()
        payload = event_json(7).encode()
        per_tx = 100
        for i in range(events // per_tx):
            code = codes[i % len(codes)]
            async with scoped_transaction(conn, code) as (_, scope):
                await store.append(
                    TxAppender(conn),
                    root_id=scope.root_id,
                    node_id=scope.node_id,
                    stream_id=uuid.uuid4(),
                    stream_type="issue",
                    expected_version=0,
                    events=[
                        NewEvent(uuid.uuid4(), EVENT_TYPE, 1, payload, datetime.now(UTC))
                        for _ in range(per_tx)
                    ],
                    context=AppendContext(actor="bench"),
                )
        county = codes[0][:6] + "000000"
    finally:
        await conn.close()
    workers = await create_pool(ctx.database_url, min_size=1, max_size=4)
    runner = ProjectionRunner(workers, [AuditTreeProjection()], batch_size=2000)
    await runner.start()
    try:
        await _caught_up(workers, runner)
    finally:
        await runner.stop()
        await workers.close()
    ctx.state[key] = (county, events)
    return county, events


@benchmark(
    "audit_tree.bundle_verify",
    GROUP,
    "events/s",
    description="civic-verify of a county's evidence bundle (10k events; 100k full)",
    timeout=900,
)
async def bundle_verify(ctx: Context) -> float:
    county, events = await _county_with_events(ctx, ctx.scaled(100_000, 10_000))
    signer = Ed25519Signer.from_pem(Ed25519Signer.generate_pem())
    raw = signer.public_key_raw()
    public = {
        "algorithm": "ed25519",
        "key_id": key_id(raw),
        "public_key": b64(raw),
        "note_key_name": "civic-ledger",
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.zip"
        conn = await ctx.connect()
        try:
            async with scoped_transaction(conn, county) as (_, _scope):
                await conn.execute("SET TRANSACTION READ ONLY")
                node = await directory.find_by_code(conn, county)
                assert node is not None
                cp = await take_checkpoint(conn, node, datetime.now(UTC), signer, Sha256Chain())
                with path.open("wb") as out:
                    async for chunk in bundle_chunks(
                        conn, node, cp, public, None, tree_algorithm="sha256"
                    ):
                        out.write(chunk)
        finally:
            await conn.close()
        ctx.report("bundle_bytes", float(path.stat().st_size), "bytes")
        checked = 0
        started = time.perf_counter()
        while checked == 0 or time.perf_counter() - started < ctx.duration:
            report = await asyncio.to_thread(verify_bundle, str(path), b64(raw))
            assert report.ok, report.first
            assert report.events == events, (report.events, events)
            checked += report.events
        elapsed = time.perf_counter() - started
    return checked / elapsed


@benchmark(
    "audit_tree.proof_hashes_10k",
    GROUP,
    "count",
    description="hashes in an inclusion + a consistency proof, tree of 10,000 (database)",
    timeout=900,
)
async def proof_hashes_10k(ctx: Context) -> float:
    county, n = await _county_with_events(ctx, 10_000)
    conn = await ctx.connect()
    try:
        async with scoped_transaction(conn, county) as (_, scope):
            state = await tree_state(conn, scope.root_id, "sha256")
            assert state.size == n
            inclusion = await inclusion_proof(conn, scope.root_id, sha256, n // 3, n)
            consistency = await consistency_proof(conn, scope.root_id, sha256, n // 3, n)
    finally:
        await conn.close()
    hashes = len(inclusion) + len(consistency)
    ctx.report("inclusion", float(len(inclusion)), "count")
    ctx.report("consistency", float(len(consistency)), "count")
    ctx.report("bytes", 32.0 * hashes, "bytes")
    return float(hashes)


@benchmark(
    "audit_tree.proof_hashes_1m",
    GROUP,
    "count",
    description="hashes in an inclusion + a consistency proof, tree of 1,000,000 (in memory)",
    timeout=900,
)
async def proof_hashes_1m(ctx: Context) -> float:
    return await asyncio.to_thread(_proofs_in_memory, ctx, 1_000_000)


def _proofs_in_memory(ctx: Context, n: int) -> float:
    first, index = n // 3, n // 3
    inc_ranges, con_ranges = inclusion_ranges(index, n), consistency_ranges(first, n)
    wanted = set(range_nodes([*inc_ranges, *con_ranges, (0, first), (0, n)]))
    kept: dict[tuple[int, int], bytes] = {}
    frontier = Frontier(sha256)
    started = time.perf_counter()
    for i in range(n):
        for level, idx, value in frontier.push_leaf(hashlib.sha256(i.to_bytes(8, "big")).digest()):
            if (level, idx) in wanted:
                kept[(level, idx)] = value
    ctx.report("build_s", time.perf_counter() - started, "s")
    root = frontier.root()
    old_root = resolve(sha256, [(0, first)], kept.__getitem__)[0]
    inclusion = resolve(sha256, inc_ranges, kept.__getitem__)
    consistency = resolve(sha256, con_ranges, kept.__getitem__)
    assert verify_inclusion(sha256, index, n, kept[(0, index)], inclusion, root)
    assert verify_consistency(sha256, first, n, old_root, root, consistency)
    hashes = len(inclusion) + len(consistency)
    ctx.report("inclusion", float(len(inclusion)), "count")
    ctx.report("consistency", float(len(consistency)), "count")
    ctx.report("bytes", 32.0 * hashes, "bytes")
    return float(hashes)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--builder"]:
        asyncio.run(_run_builder(sys.argv[2]))
    else:
        from bench.run import main

        sys.exit(main(["--only", GROUP, *sys.argv[1:]]))
