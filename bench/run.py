"""Run the benchmarks: ``python -m bench.run [--quick] [--only NAME,...] [--database-url URL]``.

Every benchmark registered in ``bench.anchors`` and ``bench.ours`` runs ``--runs`` times (3 by
default). Runs are interleaved, round by round over all selected benchmarks, so that slow
drift of a shared machine hits ours and the anchors alike and the ratios stay honest. Each
group gets a fresh scratch database (``civic_bench_<group>_<hex>``) on the server, dropped at
the end. The table goes to stdout, progress to stderr, and everything to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import importlib
import importlib.metadata
import json
import math
import os
import pkgutil
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from rich.console import Console
from rich.table import Table

from bench import db
from bench.registry import FIXTURES, REGISTRY, Benchmark, Context
from bench.targets import RATIOS, RatioSpec

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLUGIN_PACKAGES = ("bench.anchors", "bench.ours")
PACKAGES = (
    "asyncpg",
    "eventsourcing",
    "psycopg",
    "psycopg-pool",
    "litestar",
    "msgspec",
    "uvicorn",
    "uvloop",
    "httptools",
)

err = Console(stderr=True, highlight=False)

BUDGET_SKIP = "skipped: time budget exhausted"


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line (the message's first line), at most ``limit`` chars."""
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# results
@dataclass
class Figure:
    name: str
    group: str
    kind: str
    unit: str
    higher_is_better: bool
    description: str = ""
    parent: str | None = None
    """For a figure attached with ``ctx.report``: the benchmark's own figure."""
    values: list[float | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ok(self) -> list[float]:
        return [v for v in self.values if v is not None and not math.isnan(v)]

    @property
    def failures(self) -> list[str]:
        """Why runs failed (runs skipped for the time budget are not failures)."""
        return [e for e in self.errors if not e.startswith(BUDGET_SKIP)]

    @property
    def status(self) -> str:
        """``ok``; ``failed``: no run gave a value because runs failed; ``partial``: some runs
        failed; ``skipped``: no value, none failed (time budget)."""
        if self.failures:
            return "partial" if self.ok() else "failed"
        return "ok" if self.ok() else "skipped"

    @property
    def cause(self) -> str | None:
        """The last failure's cause, on one line."""
        return self.failures[-1] if self.failures else None

    @property
    def median(self) -> float | None:
        ok = self.ok()
        return statistics.median(ok) if ok else None

    def as_dict(self) -> dict[str, Any]:
        ok = self.ok()
        return {
            "group": self.group,
            "kind": self.kind,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "description": self.description,
            "parent": self.parent,
            "median": self.median,
            "min": min(ok) if ok else None,
            "max": max(ok) if ok else None,
            "n": len(ok),
            "values": self.values,
            "errors": self.errors,
            "status": self.status,
            "error": self.cause,
        }


@dataclass
class RatioResult:
    figure: str
    against: str | None
    target: float
    op: str
    ratio: float | None
    ratio_min: float | None
    ratio_max: float | None
    status: str  # met | missed | failed (a figure it needs failed) | pending (not measured)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate(spec: RatioSpec, figures: dict[str, Figure]) -> RatioResult:
    name, against, target, op = spec
    fig = figures.get(name) or _owner(name, figures)
    ref = (figures.get(against) or _owner(against, figures)) if against else None
    num = fig.median if fig else None
    den: float | None = 1.0
    per_run: list[float] = []
    if against is not None:
        den = ref.median if ref else None
        if fig and ref:
            per_run = [
                a / b
                for a, b in zip(fig.values, ref.values, strict=False)
                if a is not None and b is not None and b != 0
            ]
    elif fig:
        per_run = fig.ok()
    if fig is not None and fig.name != name:
        num = None  # the figure was never reported: its benchmark failed before it could
    if ref is not None and ref.name != against:
        den = None
    if num is None or den is None or den == 0:
        broken = [f for f in (fig, ref) if f is not None and f.status == "failed"]
        if broken:
            cause = f"{broken[0].name}: {broken[0].cause}"
            return RatioResult(name, against, target, op, None, None, None, "failed", cause)
        return RatioResult(name, against, target, op, None, None, None, "pending")
    ratio = num / den
    met = ratio >= target if op == "ge" else ratio <= target
    return RatioResult(
        name,
        against,
        target,
        op,
        ratio,
        min(per_run) if per_run else None,
        max(per_run) if per_run else None,
        "met" if met else "missed",
    )


def _owner(name: str, figures: dict[str, Figure]) -> Figure | None:
    """For ``"<benchmark>.<suffix>"`` not reported: the benchmark's figure, if it failed (a
    failed run reports none of its secondary figures)."""
    head = name
    while "." in head:
        head = head.rsplit(".", 1)[0]
        owner = figures.get(head)
        if owner is not None:
            return owner if owner.status == "failed" else None
    return None


# --------------------------------------------------------------------------------------------
# discovery and selection
def discover() -> list[str]:
    """Import every module of the plug-in packages; return import errors (not fatal)."""
    problems: list[str] = []
    for pkg_name in PLUGIN_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError as exc:
            problems.append(f"{pkg_name}: {exc}")
            continue
        for mod in pkgutil.iter_modules(pkg.__path__, pkg_name + "."):
            if mod.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            try:
                importlib.import_module(mod.name)
            except Exception as exc:
                problems.append(f"{mod.name}: {type(exc).__name__}: {exc}")
    return problems


def select(only: str | None) -> list[Benchmark]:
    """Benchmarks matching ``--only`` tokens: names, groups, globs, ``anchors`` or ``ours``."""
    all_benches = list(REGISTRY.values())
    if not only:
        return all_benches
    chosen: dict[str, Benchmark] = {}
    for token in (t.strip() for t in only.split(",")):
        if not token:
            continue
        hits = [
            b
            for b in all_benches
            if token in (b.name, b.group, b.kind, b.kind + "s")
            or fnmatch.fnmatchcase(b.name, token)
            or b.name.startswith(token + ".")
        ]
        if not hits:
            known = ", ".join(sorted({b.group for b in all_benches} | set(REGISTRY)))
            raise SystemExit(f"--only: nothing matches {token!r}; known: {known}")
        for b in hits:
            chosen[b.name] = b
    return [b for b in all_benches if b.name in chosen]


# --------------------------------------------------------------------------------------------
# running
@dataclass
class GroupRun:
    name: str
    benches: list[Benchmark]
    database_url: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.duration: float = args.duration or (1.5 if self.quick else 5.0)
        self.warmup: float = (
            args.warmup if args.warmup is not None else (0.3 if self.quick else 1.0)
        )
        self.runs: int = args.runs
        self.budget: float = args.budget or (360.0 if self.quick else 1200.0)
        self.started = time.monotonic()
        self.figures: dict[str, Figure] = {}
        self.skipped_for_budget = 0

    def context(self, g: GroupRun, run_index: int) -> Context:
        return Context(
            server_url=self.args.database_url,
            database_url=g.database_url,
            group=g.name,
            quick=self.quick,
            duration=self.duration,
            warmup=self.warmup,
            run_index=run_index,
            runs=self.runs,
            state=g.state,
        )

    def figure(self, b: Benchmark, name: str | None = None, unit: str | None = None) -> Figure:
        key = name or b.name
        if key not in self.figures:
            hib = b.higher_is_better if name is None else unit not in {"ms", "s", "count"}
            self.figures[key] = Figure(
                name=key,
                group=b.group,
                kind=b.kind,
                unit=unit or b.unit,
                higher_is_better=hib,
                description=b.description if name is None else "",
                parent=None if name is None else b.name,
            )
        return self.figures[key]

    @contextlib.asynccontextmanager
    async def group(self, g: GroupRun) -> AsyncIterator[None]:
        """Scratch database and fixture of one group, torn down on the way out."""
        stack = contextlib.AsyncExitStack()
        try:
            g.database_url = await db.create_scratch(self.args.database_url, g.name)
            stack.push_async_callback(db.drop_scratch, self.args.database_url, g.database_url)
            fixture = FIXTURES.get(g.name)
            if fixture is not None:
                ctx = self.context(g, -1)
                err.print(f"[dim]setting up {g.name}…[/dim]")
                t0 = time.monotonic()
                await asyncio.wait_for(
                    stack.enter_async_context(contextlib.asynccontextmanager(fixture)(ctx)),
                    timeout=self.args.setup_timeout,
                )
                err.print(f"[dim]{g.name} ready in {time.monotonic() - t0:.1f} s[/dim]")
        except Exception as exc:
            g.failed = one_line(exc)
            err.print(f"[red]group {g.name} failed to set up:[/red] {g.failed}")
            if self.args.verbose:
                err.print(traceback.format_exc())
        try:
            yield
        finally:
            try:
                await stack.aclose()
            except Exception as exc:
                err.print(f"[yellow]tearing down {g.name}: {type(exc).__name__}: {exc}[/yellow]")

    async def run_one(self, g: GroupRun, b: Benchmark, run_index: int) -> None:
        fig = self.figure(b)
        if g.failed:
            fig.values.append(None)
            fig.errors.append(f"setup: {g.failed}")
            return
        if time.monotonic() - self.started > self.budget:
            fig.values.append(None)
            fig.errors.append(BUDGET_SKIP)
            self.skipped_for_budget += 1
            return
        if self.args.checkpoint:
            try:
                await db.checkpoint(self.args.database_url)
            except Exception as exc:  # best effort: the run goes ahead without it
                err.print(f"  [yellow]CHECKPOINT before {b.name}: {one_line(exc)}[/yellow]")
        ctx = self.context(g, run_index)
        timeout = b.timeout or 60.0 + 12.0 * (self.duration + self.warmup)
        t0 = time.monotonic()
        try:
            value = float(await asyncio.wait_for(b.fn(ctx), timeout))
        except (Exception, asyncio.CancelledError) as exc:
            # A cancellation of the whole run (Ctrl-C, SIGTERM) goes on up; one raised by
            # the benchmark itself is that figure's failure, like any other error.
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            msg = one_line(exc)
            for f in [fig, *(f for f in self.figures.values() if f.parent == b.name)]:
                f.values.append(None)
                f.errors.append(msg)
            err.print(f"  [red]{b.name} run {run_index + 1}: {msg}[/red]")
            if self.args.verbose:
                err.print(traceback.format_exc())
            return
        fig.values.append(value)
        extras = ", ".join(f"{k}={fmt(v, u)} {u}" for k, (v, u) in ctx.extras.items())
        err.print(
            f"  {b.name} run {run_index + 1}/{self.runs}: {fmt(value, b.unit)} {b.unit}"
            + (f" ({extras})" if extras else "")
            + f" [dim]{time.monotonic() - t0:.1f} s[/dim]"
        )
        for suffix, (v, unit) in ctx.extras.items():
            xfig = self.figure(b, f"{b.name}.{suffix}", unit)
            # keep run indices aligned with the primary figure's
            while len(xfig.values) < len(fig.values) - 1:
                xfig.values.append(None)
            xfig.values.append(v)

    async def run(self, benches: list[Benchmark]) -> list[GroupRun]:
        groups: dict[str, GroupRun] = {}
        for b in benches:
            groups.setdefault(b.group, GroupRun(b.group, [])).benches.append(b)
            self.figure(b)
        order = list(groups.values())
        if self.args.order == "grouped":
            for g in order:
                async with self.group(g):
                    for r in range(self.runs):
                        for b in g.benches:
                            await self.run_one(g, b, r)
            return order
        async with contextlib.AsyncExitStack() as stack:
            for g in order:
                await stack.enter_async_context(self.group(g))
            for r in range(self.runs):
                err.print(f"[bold]round {r + 1}/{self.runs}[/bold]")
                for g in order:
                    for b in g.benches:
                        await self.run_one(g, b, r)
            err.print("[dim]tearing down…[/dim]")
        return order


# --------------------------------------------------------------------------------------------
# output
def fmt(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    if unit in ("ms", "s", "µs", "us"):
        return f"{value:,.2f}"
    if unit in ("count", "errors"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def fmt_ratio(r: float | None) -> str:
    if r is None or math.isnan(r):
        return "—"
    return f"{r:.3g}×"


def op_text(op: str) -> str:
    return "≥" if op == "ge" else "≤"


def render(
    console: Console,
    figures: dict[str, Figure],
    ratios: list[RatioResult],
    compares: list[tuple[str, str, float | None]],
    title: str,
) -> None:
    vs: dict[str, list[str]] = {}
    for name, against, r in compares:
        vs.setdefault(name, []).append(f"{fmt_ratio(r)} {against}")
    for rr in ratios:
        if rr.against is None or rr.figure not in figures:
            continue
        mark = {
            "met": "[green]✓[/green]",
            "missed": "[red]✗[/red]",
            "failed": "[red]failed[/red]",
        }.get(rr.status, "…")
        vs.setdefault(rr.figure, []).append(
            f"{fmt_ratio(rr.ratio)} {rr.against} ({op_text(rr.op)}{rr.target:g} {mark})"
        )

    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("figure", no_wrap=True)
    table.add_column("kind")
    table.add_column("unit")
    table.add_column("median", justify="right")
    table.add_column("range (min–max)", justify="right", overflow="fold")
    table.add_column("n", justify="right")
    table.add_column("ratios", overflow="fold")
    primaries = [f for f in figures.values() if f.parent is None]
    primaries.sort(key=lambda f: f.kind != "ours")  # ours first, then anchors; stable
    rows: list[Figure] = []
    for p in primaries:
        rows.append(p)
        rows += [f for f in figures.values() if f.parent == p.name]
    for fig in rows:
        name = fig.name
        ok = fig.ok()
        rng = f"{fmt(min(ok), fig.unit)}–{fmt(max(ok), fig.unit)}" if ok else "—"
        n = f"{len(ok)}/{len(fig.values)}"
        if fig.status == "failed":
            rng = f"[red]failed: {fig.cause}[/red]"
        elif fig.status == "partial":
            rng += f"\n[red]{len(fig.failures)} failed: {fig.cause}[/red]"
        elif not ok and fig.errors:
            rng = f"[yellow]{fig.errors[-1][:60]}[/yellow]"
        table.add_row(
            name, fig.kind, fig.unit, fmt(fig.median, fig.unit), rng, n, "\n".join(vs.get(name, []))
        )
    console.print(table)

    shown = [rr for rr in ratios if rr.status != "pending" or rr.figure in figures]
    shown += [
        rr
        for rr in ratios
        if rr.status == "pending" and rr.figure not in figures and rr.against in figures
    ]
    if not shown:
        return
    t = Table(title="targets (issues #6 and #20)", title_justify="left")
    t.add_column("figure", no_wrap=True)
    t.add_column("against", no_wrap=True)
    t.add_column("measured", justify="right")
    t.add_column("per-round range", justify="right", no_wrap=True)
    t.add_column("target", justify="right")
    t.add_column("status", overflow="fold")
    for rr in shown:
        unit = figures[rr.figure].unit if rr.figure in figures else ""
        if rr.against is None:
            measured, rng = (
                fmt(rr.ratio, unit),
                (
                    f"{fmt(rr.ratio_min, unit)}–{fmt(rr.ratio_max, unit)}"
                    if rr.ratio_min is not None
                    else "—"
                ),
            )
            target = f"{op_text(rr.op)} {fmt(rr.target, unit)} {unit}"
        else:
            measured = fmt_ratio(rr.ratio)
            rng = (
                f"{fmt_ratio(rr.ratio_min)}–{fmt_ratio(rr.ratio_max)}"
                if rr.ratio_min is not None
                else "—"
            )
            target = f"{op_text(rr.op)} {rr.target:g}×"
        status = {
            "met": "[green]met[/green]",
            "missed": "[red]missed[/red]",
            "failed": f"[red]failed[/red] ({rr.error})",
            "pending": "[yellow]pending[/yellow]",
        }[rr.status]
        t.add_row(rr.figure, rr.against or "(absolute)", measured, rng, target, status)
    console.print(t)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs (whole suite < 6 min)")
    p.add_argument(
        "--only",
        metavar="NAME,...",
        help="benchmarks, groups or globs (e.g. raw,messagedb or 'store.*'); "
        "'anchors' / 'ours' select all of one kind",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_URL,
        help="PostgreSQL server to use (scratch databases are created on it); "
        f"default $DATABASE_URL or {DEFAULT_URL}",
    )
    p.add_argument("--runs", type=int, default=3, help="runs per benchmark (median of these)")
    p.add_argument("--duration", type=float, help="timed seconds per run (5 / quick 1.5)")
    p.add_argument("--warmup", type=float, help="untimed seconds per run (1 / quick 0.3)")
    p.add_argument("--order", choices=("interleaved", "grouped"), default="interleaved")
    p.add_argument(
        "--no-checkpoint",
        dest="checkpoint",
        action="store_false",
        help="skip the CHECKPOINT before each run (it keeps one run's dirty pages and WAL "
        "from being flushed during the next)",
    )
    p.add_argument("--budget", type=float, help="seconds after which remaining runs are skipped")
    p.add_argument("--setup-timeout", type=float, default=600.0, help="per group fixture")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    problems = discover()
    for prob in problems:
        err.print(f"[yellow]could not load benchmark module {prob}[/yellow]")
    benches = select(args.only)
    if args.list:
        for b in REGISTRY.values():
            print(f"{b.name:40} {b.group:14} {b.kind:7} {b.unit:10} {b.description}")
        return 0
    if not benches:
        err.print("no benchmarks selected")
        return 2
    if args.runs < 3:
        err.print(f"[yellow]--runs {args.runs}: fewer than 3 runs, medians are weak[/yellow]")

    started_at = datetime.now(UTC)
    try:
        pg = await db.server_info(args.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        err.print(f"[red]cannot reach PostgreSQL at {args.database_url}: {exc}[/red]")
        return 2
    runner = Runner(args)
    err.print(
        f"[bold]civic-ledger bench[/bold]: {len(benches)} benchmarks × {runner.runs} runs, "
        f"{runner.duration:g} s (+{runner.warmup:g} s warm-up) each, PostgreSQL {pg['version']} "
        f"(fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}), "
        f"{os.cpu_count()} CPUs"
    )
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    groups = await runner.run(benches)
    elapsed = time.monotonic() - runner.started

    figures = runner.figures
    ratios = [evaluate(spec, figures) for spec in RATIOS]
    ratios = [
        r
        for r in ratios
        if r.figure in figures or (r.against or "") in figures or r.status == "failed"
    ]
    compares: list[tuple[str, str, float | None]] = []
    for b in benches:
        for other in b.compare:
            if other in figures:
                a, o = figures[b.name].median, figures[other].median
                compares.append((b.name, other, a / o if a is not None and o else None))

    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    title = (
        f"civic-ledger bench — {'quick' if args.quick else 'full'}, median of {runner.runs} "
        f"runs, {elapsed:.0f} s, {started_at:%Y-%m-%d %H:%M} UTC"
    )
    render(console, figures, ratios, compares, title)

    result = {
        "schema": 1,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "elapsed_s": round(elapsed, 1),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "quick": args.quick,
        "runs": runner.runs,
        "duration_s": runner.duration,
        "warmup_s": runner.warmup,
        "order": args.order,
        "checkpoint_before_each_run": args.checkpoint,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "postgres": pg,
        "packages": package_versions(),
        "groups": {g.name: {"failed": g.failed, "info": g.state.get("info", {})} for g in groups},
        "figures": {k: f.as_dict() for k, f in figures.items()},
        "ratios": [r.as_dict() for r in ratios],
        "comparisons": [{"figure": a, "against": b, "ratio": r} for a, b, r in compares],
        "import_errors": problems,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    err.print(f"wrote {args.output} ({elapsed:.0f} s)")
    if runner.skipped_for_budget:
        err.print(f"[yellow]{runner.skipped_for_budget} runs skipped: time budget[/yellow]")
    failed = [f for f in figures.values() if f.parent is None and f.status != "ok"]
    failed = [f for f in failed if f.status != "skipped"]
    for f in failed:
        runs = f"{len(f.failures)}/{len(f.values)} runs"
        err.print(f"[red]{f.name} failed ({runs}): {f.cause}[/red]")
    missing = [f.name for f in figures.values() if f.status == "skipped"]
    if missing:
        err.print(f"[red]no figure for: {', '.join(missing)}[/red]")
    return 1 if failed or missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # The API serves on uvloop (uvicorn picks it); the clients here, ours and the
        # anchors' alike, run on it too, so client overhead is the same kind on both sides.
        return uvloop.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("[red]interrupted[/red]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
