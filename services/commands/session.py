"""Running a command: load → decide → append, in one statement or one scoped transaction.

A command first runs in **one statement**: it decides on what the process has cached (the
aggregates it loads, ``AggregateCache``; the nodes it names, ``NodeCache``) and its one
stream's append, with the scope, the closed-subtree check, the party writes it made
(``add_party``, ``set_party``) and the Idempotency-Key record, is a single autocommit call
(``EventStore.append_statement``, migrations 0036 and 0047). A load or look-up the process
has not cached (``NotCached``) is read in one autocommit statement of its own, in the
principal's scope as the runtime role (``infra.command_read``, migration 0053), and the
command decides again on it: a **cold** command costs two round trips. A command that needs
more (``session.conn``, a second stream, personal-data keys, two party writes of one stream
and role, a stream that may not be cached, a snapshot to write, more than
``MAX_COLD_READS`` reads) raises ``NeedsTransaction`` on the way and runs again, from the
start, in a **scoped transaction**, which reads everything fresh; so does one whose
decision on cached or cold-read state was a refusal, so that a refusal is always decided in
a transaction. A stale cached aggregate, or one a concurrent command appended to after the
cold read, is refused by the database as a version conflict and retried.

``run_command`` owns the cross-cutting rules every POST follows:
* the principal's scope is entered, so row-level security guards every statement;
* ``Idempotency-Key``: a retry with the same body gets the first response, a different
  body gets 422; concurrent duplicates are settled by the key's primary key. The first
  attempt does not look the key up: its record goes in with the COMMIT, and a key already
  stored fails that COMMIT, so the retry looks it up and replays. A fresh key (the normal
  case) thus costs no round trip; a decision that fails looks the key up afterwards, so a
  retry of a command that succeeded earlier still gets its first answer;
* ``If-Match``: the aggregate's version must match, else 412;
* without ``If-Match``, a version conflict is retried (fresh load, fresh decision);
* a closed subtree takes no commands: every append checks, with the COMMIT, that neither
  its chain node nor the principal's scope node lies under a closed node (409
  ``node-closed``), and node look-ups refuse such nodes at once (``services.commands.lookup``).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import msgspec

from domain.base import CivicAggregate
from domain.node import Node
from infra import command_read, directory, snapshots
from infra.database import (
    DatabaseUnavailable,
    Scope,
    bootstrap_transaction,
    defer_until_commit,
    hex_bytea,
    hex_text,
    scoped_transaction,
)
from infra.directory import DirectoryNode, PartyWrite
from infra.event_codec import NewEvent
from infra.event_store import (
    AppendContext,
    AppendResult,
    ConcurrencyError,
    IdempotencyRecord,
    TxAppender,
    provisional_base,
)
from infra.pii_crypto import PersonKeyring, cipher_for_profile
from infra.pii_keys import master_key
from services.auth import Principal
from services.commands.aggregate_cache import AggregateCache
from services.commands.node_cache import NodeCache
from services.context import AppContext
from services.problems import ProblemError, not_found

A = TypeVar("A", bound=CivicAggregate)

MAX_ATTEMPTS = 5
#: cold reads one command may make before it goes on in a transaction (each one costs a round
#: trip; a scoped transaction costs at least four)
MAX_COLD_READS = 2

FIND_KEY = (
    "SELECT request_hash, status, response FROM idempotency_keys WHERE principal = $1 AND key = $2"
)
SAVE_KEY = (
    "INSERT INTO idempotency_keys (principal, key, request_hash, status, response)"
    " VALUES ({principal}, {key}, {request_hash}, {status}, {response})"
)


@dataclass(frozen=True)
class CommandRequest:
    """What of the HTTP request matters to command execution."""

    method: str
    path: str
    body: bytes
    idempotency_key: str | None = None
    if_match: int | None = None
    correlation_id: UUID | None = None

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(
            self.method.encode() + b" " + self.path.encode() + b"\n" + self.body
        ).digest()


class NeedsTransaction(Exception):
    """A one-statement attempt met what only a transaction gives (see the module's doc)."""


class NotCached(NeedsTransaction):
    """A one-statement attempt needs a stream or a node the process has not cached: one read
    statement (``civic_command_read``) may fetch it, and the command decides again."""

    def __init__(
        self,
        what: str,
        *,
        stream: tuple[type[CivicAggregate], UUID, UUID] | None = None,
        code: str | None = None,
        node_id: UUID | None = None,
    ) -> None:
        super().__init__(what)
        #: (aggregate class, root, stream id)
        self.stream = stream
        self.code = code
        self.node_id = node_id

    @property
    def key(self) -> object:
        """What was missing (a command that misses it again after reading it goes on in a
        transaction)."""
        return self.stream[2] if self.stream is not None else (self.code, self.node_id)


@dataclass(frozen=True)
class _Read:
    """What the cold reads of one command fetched, kept apart from the process's caches
    (which other commands may evict meanwhile) so that its next attempt surely decides on it;
    with the same rules of who may be served what."""

    aggregates: AggregateCache = field(default_factory=AggregateCache)
    nodes: NodeCache = field(default_factory=NodeCache)


@dataclass(frozen=True)
class _PendingWrite:
    """The one append of a one-statement attempt, sent once the answer is known."""

    aggregate: CivicAggregate
    root_id: UUID
    node_id: UUID
    expected: int
    events: list[NewEvent]
    context: AppendContext
    check_nodes: tuple[UUID, ...]
    check_except: UUID | None
    placeholder: int

    def resolve(self, encoded: bytes, result: AppendResult) -> bytes:
        """``encoded`` with the provisional positions replaced by the real ones."""
        for i, position in enumerate(result.positions):
            encoded = encoded.replace(str(self.placeholder + i).encode(), str(position).encode())
        return encoded


@dataclass(frozen=True)
class Saved(Generic[A]):
    """An aggregate as a command left it, and where its new events were appended."""

    aggregate: A
    result: AppendResult

    @property
    def version(self) -> int:
        return self.result.version

    @property
    def position(self) -> int:
        return self.result.position


@dataclass(frozen=True)
class CommandOutcome:
    status: int
    body: bytes
    replayed: bool = False
    position: int | None = None


class CommandSession:
    """One attempt of one command, in one statement or inside its transaction."""

    def __init__(
        self,
        ctx: AppContext,
        conn: asyncpg.Connection,
        scope: Scope | None,
        principal: Principal,
        request: CommandRequest,
        now: datetime,
        *,
        one_statement: bool = False,
        read: _Read | None = None,
    ) -> None:
        self.ctx = ctx
        self._conn = conn
        #: decide on cached state; the write goes out as one statement (``_PendingWrite``)
        self.one_statement = one_statement
        #: what this command's cold reads fetched (a one-statement attempt looks there first)
        self._read = read or _Read()
        self.pending: _PendingWrite | None = None
        #: the party writes of a one-statement attempt, sent with its append
        self.parties: list[PartyWrite] = []
        self.scope = scope
        self.principal = principal
        self.request = request
        self.now = now
        self.tx = TxAppender(conn)
        #: the per-person data keys this transaction uses (sealing personal-data fields)
        self.keyring = PersonKeyring(
            master_key(ctx.settings), cipher_for_profile(ctx.settings.crypto_profile)
        )
        #: nodes (chain and scope) whose open-subtree check is already queued for the COMMIT
        self._open_checked: set[UUID] = set()
        #: streams this attempt may cache once it is committed: id → (root, event node paths)
        self._cacheable: dict[UUID, tuple[UUID, frozenset[str]]] = {}
        #: what it saved: (root, aggregate, chain node), to cache after the commit
        self._saved: list[tuple[UUID, CivicAggregate, UUID]] = []
        #: streams whose events may hold personal data
        self._personal: set[UUID] = set()
        #: streams loaded whole from a snapshot far behind (or none): their node ids
        self._snapshot_due: dict[UUID, frozenset[UUID]] = {}
        self.append_context = AppendContext(
            actor=f"{principal.subject}@{principal.scope}",
            correlation_id=request.correlation_id,
            idempotency_key=request.idempotency_key,
        )

    @property
    def conn(self) -> asyncpg.Connection:
        """The transaction's connection (a one-statement attempt has none to offer)."""
        if self.one_statement:
            raise NeedsTransaction("the command uses the connection")
        return self._conn

    @property
    def root_id(self) -> UUID:
        assert self.scope is not None
        return self.scope.root_id

    async def load(self, cls: type[A], stream_id: UUID, *, root_id: UUID | None = None) -> A | None:
        """Rebuild an aggregate from its events (only those row-level security lets us see).

        A one-statement attempt takes it from the cache, when the principal's scope covers
        every node the stream's events lie on (and If-Match, if sent, names its version).
        """
        root = root_id or self.root_id
        if self.one_statement:
            assert self.scope is not None
            for cache in (self._read.aggregates, self.ctx.aggregates):
                cached = cache.get(cls, root, stream_id, self.scope.path)
                if cached is not None and self.request.if_match in (None, cached.version):
                    self._cacheable[stream_id] = (root, cache.paths(stream_id) or frozenset())
                    return cached
            raise NotCached("the aggregate is not cached", stream=(cls, root, stream_id))
        loaded = await snapshots.load_stream(
            self._conn, self.ctx.store, self.ctx.codec, self.keyring, cls, root, stream_id
        )
        if loaded is None:
            return None
        if _snapshot_due(self.ctx, loaded):
            self._snapshot_due[stream_id] = loaded.node_ids  # written by its save
        if self.scope is not None:
            known = _keep(self.ctx.aggregates, root, loaded)
            if known is not None:
                self._cacheable[stream_id] = (root, known)
        return loaded.aggregate

    async def update(
        self,
        cls: type[A],
        stream_id: UUID,
        act: Callable[[A], object],
        *,
        authorize: Callable[[A], Awaitable[object]] | None = None,
        what: str | None = None,
        node_id: UUID | None = None,
        closes_node: bool = False,
    ) -> Saved[A]:
        """Every command on an existing aggregate: load it (invisible or of another type →
        404 ``what``), ``authorize`` on the loaded state (placement checks raise 403),
        If-Match (412), ``act`` (the domain decides and records), save."""
        aggregate = await self.load(cls, stream_id)
        if aggregate is None:
            raise not_found(f"{what or cls.STREAM_TYPE} {stream_id}")
        if authorize is not None:
            await authorize(aggregate)
        self.check_if_match(aggregate)
        act(aggregate)
        return Saved(
            aggregate, await self.save(aggregate, node_id=node_id, closes_node=closes_node)
        )

    async def create(
        self, aggregate: A, *, node_id: UUID | None = None, root_id: UUID | None = None
    ) -> Saved[A]:
        """Save a new aggregate's first events (the stream must not exist yet)."""
        return Saved(aggregate, await self.save(aggregate, node_id=node_id, root_id=root_id))

    # -- the directory, as commands need it (row-level security applies) -----------------

    async def node_by_code(self, code: str) -> DirectoryNode | None:
        """The node a current or former code names (row-level security: in the caller's root
        tenant); a one-statement attempt takes it from the cache."""
        if self.one_statement:
            assert self.scope is not None
            root = self.scope.root_id
            node = self._read.nodes.by_code(root, code) or self.ctx.nodes.by_code(root, code)
            if node is None:
                raise NotCached("the node is not cached", code=code)
            return node
        return self._kept(await directory.find_by_code(self._conn, code), code)

    async def node(self, node_id: UUID | None) -> DirectoryNode | None:
        """The node with this id (``None`` for ``None``, or a node the caller cannot see); a
        one-statement attempt takes it from the cache."""
        if node_id is None:
            return None
        if self.one_statement:
            assert self.scope is not None
            root = self.scope.root_id
            node = self._read.nodes.by_id(root, node_id) or self.ctx.nodes.by_id(root, node_id)
            if node is None:
                raise NotCached("the node is not cached", node_id=node_id)
            return node
        return self._kept(await directory.find_by_id(self._conn, node_id))

    def _kept(self, node: DirectoryNode | None, code: str | None = None) -> DirectoryNode | None:
        if node is not None:
            self.ctx.nodes.put(node, code)
        return node

    def in_scope(self, node: DirectoryNode | None) -> bool:
        """The node lies in the caller's subtree."""
        return node is not None and self.scope is not None and self.scope.contains_path(node.path)

    async def add_party(self, node_id: UUID, stream_id: UUID, role: str) -> None:
        """``node_id`` takes part in the stream (its unit principals see it, by row-level
        security); before the save when the caller is that unit. A one-statement attempt
        sends it with its append."""
        if self.one_statement:
            self._write_party(PartyWrite(stream_id, role, node_id, False, self.pending is None))
            return
        await directory.add_party(self._conn, self.root_id, node_id, stream_id, role)

    async def set_party(self, stream_id: UUID, role: str, node_id: UUID | None) -> None:
        """The stream's one party in ``role`` is now ``node_id`` (``None``: nobody); the
        former holder no longer sees the stream. After the save: the append's row-level
        check may still need the party being ended. A one-statement attempt sends it with
        its append."""
        if self.one_statement:
            self._write_party(PartyWrite(stream_id, role, node_id, True, self.pending is None))
            return
        await directory.set_party(self._conn, self.root_id, stream_id, role, node_id)

    def _write_party(self, write: PartyWrite) -> None:
        if any((p.stream_id, p.role) == (write.stream_id, write.role) for p in self.parties):
            # one statement would apply both at once, in no defined order
            raise NeedsTransaction("two party writes of one stream and role")
        self.parties.append(write)

    def check_if_match(self, aggregate: CivicAggregate) -> None:
        expected = self.request.if_match
        if expected is not None and expected != aggregate.version:
            raise ProblemError(
                412,
                "Precondition Failed",
                f"If-Match names version {expected} but the current version is {aggregate.version}",
                extra={"current_version": aggregate.version},
            )

    async def shred_personal_data(self, stream_id: UUID) -> None:
        """Crypto-shredding: delete the stream's data key (and its snapshot) in this
        transaction."""
        await self.keyring.shred(self.conn, self.root_id, stream_id)
        await snapshots.delete(self.conn, self.root_id, stream_id)
        self.ctx.aggregates.drop(stream_id)
        self._cacheable.pop(stream_id, None)

    async def save(
        self,
        aggregate: CivicAggregate,
        *,
        node_id: UUID | None = None,
        root_id: UUID | None = None,
        closes_node: bool = False,
        caused_by: UUID | None = None,
    ) -> AppendResult:
        """Append the aggregate's pending events to its stream on ``node_id``'s chain.

        Neither the chain node nor the principal's scope node may lie in a closed subtree
        (checked with the COMMIT, so it costs no round trip); ``closes_node``: the events
        close the chain node itself (NodeClosed), which may then be closed.

        Several saves in one command append several streams in one transaction (positions
        follow the order of the saves). ``caused_by``: the event id a consequence on another
        stream records as its causation (a member's points for the order that earned them).
        """
        pending = aggregate.collect_events()
        if not pending:
            raise ValueError("no pending events to save")
        expected = aggregate.version - len(pending)
        root = root_id or self.root_id
        chain_node = node_id or aggregate.owner_node_id
        context = (
            self.append_context
            if caused_by is None
            else replace(self.append_context, causation_id=caused_by)
        )
        personal = any(self.ctx.codec.carries_personal_data(e) for e in pending)
        if expected == 0:
            self._cacheable.setdefault(aggregate.id, (root, frozenset()))  # a new stream
        if self.one_statement:
            if self.pending is not None or personal:
                raise NeedsTransaction("a second stream, or personal data to seal")
            return self._defer(aggregate, root, chain_node, expected, pending, context, closes_node)
        unchecked = {chain_node} - self._open_checked
        if self.scope is not None:
            unchecked |= {self.scope.node_id} - self._open_checked
        if unchecked:
            self._open_checked |= unchecked
            defer_until_commit(
                directory.refuse_closed_statement(
                    sorted(unchecked), except_id=chain_node if closes_node else None
                )
            )
        if personal:
            # the person's data key, created in this transaction on first registration
            await self.keyring.ensure(self._conn, root, aggregate.id)
        events = self._encode(aggregate.id, pending)
        result = await self.ctx.store.append(
            self.tx,
            root_id=root,
            node_id=chain_node,
            stream_id=aggregate.id,
            stream_type=type(aggregate).STREAM_TYPE,
            expected_version=expected,
            events=events,
            context=context,
        )
        self.count(events)
        self._saved.append((root, aggregate, chain_node))
        due = self._snapshot_due.pop(aggregate.id, None)
        if due is not None:
            self._snapshot(aggregate, root, due | {chain_node}, result)
        return result

    def _snapshot(
        self, aggregate: CivicAggregate, root: UUID, node_ids: frozenset[UUID], at: AppendResult
    ) -> None:
        """Write the aggregate's snapshot with the COMMIT that stores its events (so never
        one of a version that did not commit), sealing its personal data."""
        state = snapshots.encode_state(aggregate, self.keyring)
        if state is None or not at.event_ids:
            return
        defer_until_commit(
            snapshots.put_statement(
                root_id=root,
                stream_id=aggregate.id,
                stream_type=type(aggregate).STREAM_TYPE,
                version=at.version,
                event_id=at.event_ids[-1],
                state_version=type(aggregate).STATE_VERSION,
                state=state,
                node_ids=node_ids,
            )
        )

    def _defer(
        self,
        aggregate: CivicAggregate,
        root: UUID,
        chain_node: UUID,
        expected: int,
        pending: Any,
        context: AppendContext,
        closes_node: bool,
    ) -> AppendResult:
        """Keep the one-statement attempt's append; answer with provisional positions."""
        assert self.scope is not None
        events = self._encode(aggregate.id, pending)
        placeholder = provisional_base()
        self.pending = _PendingWrite(
            aggregate,
            root,
            chain_node,
            expected,
            events,
            context,
            tuple(sorted({chain_node, self.scope.node_id})),
            chain_node if closes_node else None,
            placeholder,
        )
        return AppendResult(
            stream_id=aggregate.id,
            version=aggregate.version,
            positions=tuple(placeholder + i for i in range(len(events))),
            node_seqs=(0,) * len(events),
            event_ids=tuple(e.event_id for e in events),
        )

    def _encode(self, stream_id: UUID, pending: Any) -> list[NewEvent]:
        events = [self.ctx.codec.encode(e, cipher=self.keyring) for e in pending]
        if any(self.ctx.codec.has_personal_data(e.type) for e in events):
            self._cacheable.pop(stream_id, None)  # never cached (see AggregateCache)
            self._personal.add(stream_id)
        return events

    def count(self, events: list[NewEvent]) -> None:
        """The appended events, in the metrics."""
        for e in events:
            self.ctx.metrics.events_appended.labels(e.type).inc()

    def committed(self) -> None:
        """After the commit: cache what was saved, and forget nodes when node events went in."""
        if self.pending is not None:
            self._saved.append((self.pending.root_id, self.pending.aggregate, self.pending.node_id))
        if any(type(saved[1]).STREAM_TYPE == Node.STREAM_TYPE for saved in self._saved):
            self.ctx.nodes.clear()  # moved paths, closed subtrees
            self.ctx.aggregates.clear()
            return
        for root, aggregate, chain_node in self._saved:
            path = self._node_path(root, chain_node)
            known = self._cacheable.get(aggregate.id)
            if path is None or known is None or aggregate.id in self._personal:
                self.ctx.aggregates.drop(aggregate.id)
            else:
                self.ctx.aggregates.put(root, aggregate, known[1] | {path})

    def _node_path(self, root: UUID, node_id: UUID) -> str | None:
        if self.scope is not None and node_id == self.scope.node_id:
            return self.scope.path
        node = self.ctx.nodes.by_id(root, node_id)
        return None if node is None else node.path


def _snapshot_due(ctx: AppContext, loaded: snapshots.LoadedStream) -> bool:
    """The load read so many events past the stream's snapshot (or past none) that its save
    writes a new one."""
    every = ctx.settings.snapshot_every
    return loaded.whole and every > 0 and loaded.read >= every


def _keep(
    cache: AggregateCache, root: UUID, loaded: snapshots.LoadedStream
) -> frozenset[str] | None:
    """Cache a loaded aggregate when it may be: the whole stream (no version hidden from this
    principal), every event's node known, no personal data (its decrypted state must go with
    the person's key). Its events' node paths, or None when it is not cached."""
    if not loaded.whole or loaded.personal or None in loaded.paths:
        return None
    known = frozenset(p for p in loaded.paths if p is not None)
    cache.put(root, copy.deepcopy(loaded.aggregate), known)
    return known


Decide = Callable[[CommandSession], Awaitable[tuple[int, msgspec.Struct]]]


async def run_command(
    ctx: AppContext,
    principal: Principal,
    request: CommandRequest,
    decide: Decide,
    *,
    bootstrap_root: UUID | None = None,
) -> CommandOutcome:
    """Run ``decide`` in a scoped transaction with idempotency, If-Match and retries.

    ``bootstrap_root``: the command creates this root tenant, so the principal's scope node
    does not exist yet; the transaction is scoped to the new root instead.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _attempt(
                ctx, principal, request, decide, bootstrap_root, look_up_key=attempt > 1
            )
        except Exception as exc:
            if isinstance(exc, ConcurrencyError):
                ctx.aggregates.drop(exc.stream_id)  # stale: the next attempt loads it afresh
            if _retryable(exc, request, attempt):
                await asyncio.sleep(random.uniform(0.001, 0.01) * attempt)
                continue
            failure = _failure(exc, request)
            if request.idempotency_key is not None and attempt == 1:
                # A retry of a command that succeeded may fail as a new decision (the issue
                # it closed is closed now, the node it made exists): its first answer wins.
                replay = await _stored_outcome(ctx, principal, request)
                if replay is not None:
                    return replay
            if failure is exc:
                raise
            raise failure from None


def _retryable(exc: Exception, request: CommandRequest, attempt: int) -> bool:
    if attempt >= MAX_ATTEMPTS:
        return False
    if isinstance(exc, ConcurrencyError):
        return request.if_match is None
    # Two requests with one Idempotency-Key raced (or the key was used before): the retry
    # looks the key up and replays the first answer.
    return isinstance(exc, asyncpg.UniqueViolationError) and exc.table_name == "idempotency_keys"


def node_closed(what: str) -> ProblemError:
    """A command on a closed node, or on anything under one."""
    return ProblemError(
        409,
        "Node Closed",
        f"{what} is closed, or lies under a closed node: it takes no more commands",
        slug="node-closed",
    )


def _failure(exc: Exception, request: CommandRequest) -> Exception:
    if isinstance(exc, ConcurrencyError) and request.if_match is not None:
        return ProblemError(
            412,
            "Precondition Failed",
            "the aggregate changed while the command ran; reload and retry",
        )
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == directory.NODE_CLOSED_SQLSTATE:
        return node_closed("the node this command records on")
    return exc


async def _attempt(
    ctx: AppContext,
    principal: Principal,
    request: CommandRequest,
    decide: Decide,
    bootstrap_root: UUID | None,
    *,
    look_up_key: bool,
) -> CommandOutcome:
    async with ctx.db.acquire() as conn:
        outcome = None
        if bootstrap_root is None and not look_up_key and ctx.store.sql_links:
            scope = ctx.scopes.get(principal.scope)
            if scope is not None:
                outcome = await _one_statement(ctx, conn, scope, principal, request, decide)
        if outcome is not None:
            pass
        elif bootstrap_root is not None:
            async with bootstrap_transaction(conn, bootstrap_root):
                outcome, session = await _decide_and_record(
                    ctx, conn, None, principal, request, decide, look_up_key
                )
            if session is not None:
                session.committed()
        else:
            async with scoped_transaction(
                conn,
                principal.scope,
                statement_timeout_ms=ctx.settings.statement_timeout_ms,
                cache=ctx.scopes,
            ) as (_, scope):
                outcome, session = await _decide_and_record(
                    ctx, conn, scope, principal, request, decide, look_up_key
                )
            if session is not None:
                session.committed()
    if not outcome.replayed:
        for hook in ctx.after_commit:
            hook(outcome)
    return outcome


async def _one_statement(
    ctx: AppContext,
    conn: asyncpg.Connection,
    scope: Scope,
    principal: Principal,
    request: CommandRequest,
    decide: Decide,
) -> CommandOutcome | None:
    """The command decided on cached state and written in one statement; None when it needs
    a transaction (or was refused: the refusal is decided again on fresh reads).

    What it needs and the process has not cached (``NotCached``), it reads in one statement
    (``_cold_read``, at most ``MAX_COLD_READS`` times) and decides again on it, so a command
    on a stream this process has not seen costs two round trips."""
    read = _Read()
    reads: set[object] = set()
    while True:
        session = CommandSession(
            ctx, conn, scope, principal, request, ctx.clock(), one_statement=True, read=read
        )
        try:
            status, body = await decide(session)
        except NotCached as miss:
            if (
                not ctx.settings.cold_reads
                or len(reads) >= MAX_COLD_READS
                or miss.key in reads
                or not await _cold_read(ctx, conn, scope, session.keyring, read, miss)
            ):
                return None
            reads.add(miss.key)
            continue
        except Exception:
            return None
        break
    write = session.pending
    if write is None:
        return None
    encoded = msgspec.json.encode(body)
    key = request.idempotency_key
    result = await ctx.store.append_statement(
        conn,
        scope,
        root_id=write.root_id,
        node_id=write.node_id,
        stream_id=write.aggregate.id,
        stream_type=type(write.aggregate).STREAM_TYPE,
        expected_version=write.expected,
        events=write.events,
        context=write.context,
        check_nodes=write.check_nodes,
        check_except=write.check_except,
        record=None
        if key is None
        else IdempotencyRecord(
            principal.idempotency_owner,
            request.fingerprint,
            int(status),
            encoded,
            write.placeholder,
        ),
        parties=session.parties,
    )
    session.committed()
    session.count(write.events)
    return CommandOutcome(status, write.resolve(encoded, result), position=result.position)


async def _cold_read(
    ctx: AppContext,
    conn: asyncpg.Connection,
    scope: Scope,
    keyring: PersonKeyring,
    read: _Read,
    miss: NotCached,
) -> bool:
    """Read what ``miss`` names in one statement, as ``scope`` may see it, into ``read`` and
    the process's caches; False when the command had better run in a transaction: the stream
    is not one to cache (hidden in part, personal data, not seen at all: a refusal is decided
    in the transaction), or its load is due to write a snapshot, which only a transaction does.
    The nodes of the stream's events and parties and the principal's scope node come with it,
    as the command will look them up next."""
    node_ids = [scope.node_id] if miss.node_id is None else [scope.node_id, miss.node_id]
    stream = None
    if miss.stream is not None:
        cls, root, stream_id = miss.stream
        stream = (stream_id, cls.STREAM_TYPE, cls.STATE_VERSION)
    found = await command_read.read(
        conn,
        scope,
        root_id=scope.root_id if miss.stream is None else miss.stream[1],
        stream=stream,
        codes=() if miss.code is None else (miss.code,),
        node_ids=node_ids,
    )
    for node, code in found.nodes:
        read.nodes.put(node, code)
        ctx.nodes.put(node, code)
    if miss.stream is None:
        return True
    cls, root, stream_id = miss.stream
    try:
        loaded = await snapshots.rebuild(found.rows, ctx.codec, keyring, cls, root, stream_id)
    except snapshots.NeedsMoreReads:
        return False
    if loaded is None or _snapshot_due(ctx, loaded) or _keep(read.aggregates, root, loaded) is None:
        return False
    _keep(ctx.aggregates, root, loaded)
    return True


async def _decide_and_record(
    ctx: AppContext,
    conn: asyncpg.Connection,
    scope: Scope | None,
    principal: Principal,
    request: CommandRequest,
    decide: Decide,
    look_up_key: bool,
) -> tuple[CommandOutcome, CommandSession | None]:
    key = request.idempotency_key
    if key is not None and look_up_key:
        replay = stored_answer(
            request, await conn.fetchrow(FIND_KEY, principal.idempotency_owner, key)
        )
        if replay is not None:
            return replay, None
    session = CommandSession(ctx, conn, scope, principal, request, ctx.clock())
    status, body = await decide(session)
    encoded = msgspec.json.encode(body)
    if key is not None:
        # Sent with the COMMIT: a duplicate key (a concurrent twin) fails the commit, and the
        # retry loop then replays the twin's response.
        defer_until_commit(
            SAVE_KEY.format(
                principal=hex_text(principal.idempotency_owner),
                key=hex_text(key),
                request_hash=hex_bytea(request.fingerprint),
                status=int(status),
                response=hex_bytea(encoded),
            )
        )
    position = session.tx.results[-1].position if session.tx.results else None
    return CommandOutcome(status, encoded, position=position), session


def stored_answer(request: CommandRequest, row: asyncpg.Record | None) -> CommandOutcome | None:
    """The stored first answer to this key, or 422 when the key came with another request."""
    if row is None:
        return None
    if bytes(row["request_hash"]) != request.fingerprint:
        raise ProblemError(
            422,
            "Idempotency Key Reused",
            "this Idempotency-Key was already used with a different request",
            slug="idempotency-key-reused",
        )
    return CommandOutcome(row["status"], bytes(row["response"]), replayed=True)


async def _stored_outcome(
    ctx: AppContext, principal: Principal, request: CommandRequest
) -> CommandOutcome | None:
    """Look the request's key up on its own (after a failed first attempt); None when it is
    not stored or cannot be looked up now (the original failure is then what the client gets)."""
    try:
        async with ctx.db.acquire() as conn:
            row = await conn.fetchrow(
                FIND_KEY, principal.idempotency_owner, request.idempotency_key
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, DatabaseUnavailable):
        return None
    return stored_answer(request, row)
