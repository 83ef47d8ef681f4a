"""The ``civic`` command line: serve, project, migrate, token, dev, projections."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import click

from infra.settings import Settings

DEV_SCOPE = "330106000000"  # 杭州市西湖区, the walk-through's county


def _settings(**overrides: object) -> Settings:
    import msgspec

    return msgspec.structs.replace(Settings.from_env(), **overrides)


def _serve(settings: Settings, *, api: bool = True) -> None:
    import uvicorn

    from services.app import create_app
    from services.gc_tuning import settle_heap_for_serving
    from services.http_server import protocol_for

    app = create_app(settings, api=api)
    settle_heap_for_serving()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
        proxy_headers=True,
        # header-size caps and a deadline for the header block (services/http_server.py)
        http=protocol_for(settings),
        timeout_keep_alive=settings.keepalive_timeout_seconds,
    )
    uvicorn.Server(config).run()


@click.group()
def main() -> None:
    """civic-ledger: an event-sourced ledger for grassroots governance."""


@main.command()
@click.option("--host", default=None, help="Bind address (default HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default PORT or 8000).")
@click.option("--no-projector", is_flag=True, help="Serve the API only; run projectors elsewhere.")
def serve(host: str | None, port: int | None, no_projector: bool) -> None:
    """Serve the HTTP API (with the projector and clock unless --no-projector)."""
    base = Settings.from_env()
    settings = _settings(
        host=host or base.host,
        port=port or base.port,
        run_projector=base.run_projector and not no_projector,
    )
    _serve(settings)


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=9000, help="Port for health and metrics.")
def project(host: str | None, port: int) -> None:
    """Run projectors, the clock and relays only (health and metrics on --port)."""
    base = Settings.from_env()
    _serve(_settings(host=host or base.host, port=port, run_projector=True), api=False)


@main.command()
def migrate() -> None:
    """Apply pending migrations (safe to run concurrently)."""
    from infra import migrator
    from services.app import resolve_database_url

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(resolve_database_url(Settings.from_env()))
        try:
            applied = await migrator.apply(conn)
        finally:
            await conn.close()
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
        click.echo("migrations up to date" if not applied else f"{len(applied)} applied")

    asyncio.run(run())


@main.command()
@click.option("--scope", required=True, help="Node code the token is scoped to.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["viewer", "operator", "unit", "inspector", "admin", "integrator"]),
)
@click.option("--sub", default="dev", help="Subject (who the token is for).")
@click.option("--ttl", type=int, default=8 * 3600, help="Lifetime in seconds.")
def token(scope: str, roles: tuple[str, ...], sub: str, ttl: int) -> None:
    """Print a signed JWT (HS256 with CIVIC_JWT_SECRET or the development secret)."""
    from services.auth import issue_token
    from services.keys import jwt_config

    config = jwt_config(Settings.from_env())
    click.echo(issue_token(config, subject=sub, scope=scope, roles=list(roles), ttl_seconds=ttl))


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def dev(host: str | None, port: int | None) -> None:
    """Development server: embedded PostgreSQL unless DATABASE_URL is set; prints a token."""
    from infra import embedded_pg
    from services.app import resolve_database_url
    from services.auth import issue_token
    from services.keys import jwt_config

    base = Settings.from_env()
    if base.is_production:
        raise click.UsageError("civic dev is for development; use civic serve in production")
    settings = _settings(host=host or base.host, port=port or base.port)
    click.echo("starting PostgreSQL..." if not settings.database_url else "using DATABASE_URL")
    # Stop the embedded server on the way out only if this process started it.
    ours = not settings.database_url and embedded_pg.running_pid(settings.data_dir) is None
    database_url = resolve_database_url(settings)
    settings = _settings(host=settings.host, port=settings.port, database_url=database_url)
    scope = os.environ.get("CIVIC_DEV_SCOPE", DEV_SCOPE)
    tok = issue_token(jwt_config(settings), subject="dev-admin", scope=scope, roles=["admin"])
    url = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"\ncivic-ledger is starting\n"
        f"  API:   {url}\n"
        f"  Docs:  {url}/schema\n"
        f"  Console (工作台; the token stays in the link's #fragment, never sent to the server):\n"
        f"    {url}/console/#token={tok}\n"
        f"  Token (admin, scope {scope}, 8 h):\n    {tok}\n\n"
        f"  export TOKEN={tok}\n"
        f'  curl -s -X POST {url}/v1/nodes -H "Authorization: Bearer $TOKEN" '
        f"-H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"code":"{scope}","name":"西湖区","kind":"county","parent_code":null}}\'\n',
    )
    sys.stdout.flush()
    try:
        _serve_until_stopped(settings)
    finally:
        if ours:
            click.echo("stopping PostgreSQL...")
            embedded_pg.stop(settings.data_dir)
    click.echo("stopped")


class _Stopped(Exception):
    """SIGTERM, as an exception: uvicorn re-raises the signal it caught once it has shut down."""


def _serve_until_stopped(settings: Settings) -> None:
    """Serve until Ctrl-C or SIGTERM, then return normally (no "Aborted!", no traceback)."""

    def stopped(signum: int, frame: object) -> None:
        raise _Stopped()

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        _serve(settings)
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.group()
def projections() -> None:
    """Inspect and rebuild projections."""


@projections.command("status")
def projections_status() -> None:
    """Each projection's position, events behind, lag, owner and error."""
    from infra.database import create_pool
    from projections.registry import all_projections
    from projections.runner import projection_status
    from services.app import resolve_database_url

    async def run() -> None:
        pool = await create_pool(resolve_database_url(Settings.from_env()), min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                rows = await projection_status(conn, all_projections())
        finally:
            await pool.close()
        from rich.console import Console
        from rich.table import Table

        table = Table(title="projections")
        for col in ("name", "position", "events behind", "lag (s)", "owner pid", "updated"):
            table.add_column(col, justify="right" if col != "name" else "left")
        table.add_column("error")
        for r in rows:
            table.add_row(
                r.name,
                str(r.position),
                f"{r.behind:,}",
                f"{r.lag_seconds:.1f}",
                str(r.owner_pid) if r.owner_pid else "-",
                r.updated_at.isoformat(timespec="seconds") if r.updated_at else "-",
                r.error or "",
            )
        Console().print(table)

    asyncio.run(run())


@projections.command("rebuild")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Rebuild every projection, one after another.")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=2000, show_default=True)
@click.option(
    "--takeover-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the live owner to hand the projection over.",
)
def projections_rebuild(
    name: str | None, all_: bool, batch_size: int, takeover_timeout: float
) -> None:
    """Replay NAME (or --all) into fresh tables beside the live ones and swap them in."""
    from projections.registry import all_projections

    known = all_projections()
    if bool(name) == all_:
        raise click.UsageError("give one projection NAME or --all")
    chosen = known if all_ else [p for p in known if p.name == name]
    if not chosen:
        names = ", ".join(p.name for p in known)
        raise click.UsageError(f"unknown projection {name!r}; known: {names}")

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from infra.database import create_pool
    from projections.rebuild import RebuildError, rebuild
    from services.app import resolve_database_url

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} events/s" if speed else "- events/s")

    async def run() -> None:
        pool = await create_pool(resolve_database_url(Settings.from_env()), min_size=1, max_size=2)
        try:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
            ) as bar:
                for projection in chosen:
                    task = bar.add_task(projection.name, total=None)

                    def show(done: int, total: int, task: TaskID = task) -> None:
                        bar.update(task, completed=done, total=max(total, 1))

                    result = await rebuild(
                        pool,
                        projection,
                        batch_size=batch_size,
                        progress=show,
                        takeover_timeout=takeover_timeout,
                    )
                    bar.console.print(
                        f"rebuilt {result.name}: {result.events:,} events in "
                        f"{result.seconds:.1f} s ({result.events_per_second:,.0f} events/s), "
                        f"checkpoint {result.position}"
                    )
        except RebuildError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await pool.close()

    asyncio.run(run())


@main.group()
def nodes() -> None:
    """The tenant hierarchy."""


@nodes.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--root", required=True, help="The county (or street) code to import under.")
@click.option("--dry-run", is_flag=True, help="Report renames, new codes and moves; write nothing.")
@click.option(
    "--batch", type=click.IntRange(1, 1000), default=25, show_default=True, help="Rows per commit."
)
def nodes_import(file: str, root: str, dry_run: bool, batch: int) -> None:
    """Import the statistics bureau's division-code CSV (统计用区划代码) under --root.

    Works on the database directly (DATABASE_URL) as an admin of the root, with the same
    rules and events as POST /v1/nodes:import; the rows are applied in commits of --batch
    (the progress bar counts them), so an interrupted import is simply run again.
    """
    from pathlib import Path

    import msgspec
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from infra.database import create_pool
    from services.api.node_import import ImportReport, importing
    from services.api.node_import import dry_run as plan_only
    from services.app import build_context, resolve_database_url
    from services.auth import Principal
    from services.commands.session import CommandRequest, run_command
    from services.problems import ProblemError
    from services.roles import Role

    data = Path(file).read_bytes()
    console = Console()
    settings = Settings.from_env()
    principal = Principal(subject="cli:nodes-import", scope=root, roles=frozenset({Role.ADMIN}))

    def show(report: ImportReport) -> None:
        mode = "would be " if report.dry_run else ""
        console.print(
            f"{root}: {report.created} {mode}created, {report.renamed} {mode}renamed, "
            f"{len(report.proposed_moves) if report.dry_run else report.moved} {mode}moved, "
            f"{report.unchanged} unchanged, {len(report.errors)} errors"
        )
        for r in report.renames if report.dry_run else ():
            console.print(f"  rename line {r.line}: {r.code} {r.old_name} → {r.new_name}")
        for m in report.proposed_moves if report.dry_run else ():
            console.print(
                f"  move line {m.line}: {m.code} ({m.from_parent}) → {m.new_code} ({m.to_parent})"
            )
        for e in report.errors:
            console.print(f"  [red]line {e.line}[/red]: {e.message}")

    async def run() -> int:
        ctx = build_context(settings)
        ctx.pool = await create_pool(resolve_database_url(settings), min_size=1, max_size=2)
        try:
            first = await plan_only(ctx, principal, root, data)
            if dry_run:
                show(first)
                return 0
            total = first.created + first.renamed + len(first.proposed_moves)
            skip: set[int] = set()
            errors = {e.line: e for e in first.errors}
            created = renamed = moved = 0
            request = CommandRequest(method="POST", path="/cli/nodes:import", body=b"")
            with Progress(
                TextColumn("[bold]import"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("rows", total=max(total, 1), completed=0 if total else 1)
                # each round applies up to --batch rows or reports their errors: bounded
                for _ in range(total + 2):
                    decide = importing(root, data, limit=batch, skip=frozenset(skip))
                    outcome = await run_command(ctx, principal, request, decide)
                    done = msgspec.json.decode(outcome.body, type=ImportReport)
                    new_errors = [e for e in done.errors if e.line not in errors]
                    for e in new_errors:
                        errors[e.line] = e
                        skip.add(e.line)
                    step = done.created + done.renamed + done.moved
                    created, renamed, moved = (
                        created + done.created,
                        renamed + done.renamed,
                        moved + done.moved,
                    )
                    bar.update(task, advance=step + len(new_errors))
                    if step == 0 and not new_errors:
                        break
            last = await plan_only(ctx, principal, root, data)
            show(
                ImportReport(
                    root=last.root,
                    dry_run=False,
                    created=created,
                    unchanged=last.unchanged,
                    renamed=renamed,
                    moved=moved,
                    proposed_moves=[],
                    renames=[],
                    new_codes=[],
                    errors=sorted(errors.values(), key=lambda e: e.line),
                )
            )
            return 1 if errors else 0
        except ProblemError as exc:
            raise click.ClickException(exc.detail) from None
        finally:
            await ctx.pool.close()

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()


@main.command()
@click.option("--url", required=True, help="The server, e.g. https://ledger.example.gov.cn")
@click.option("--node", required=True, help="A node of the root tenant to witness.")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The witness's Ed25519 key (PEM); created, mode 0600, if absent.",
)
@click.option("--name", required=True, help="The witness's key name, e.g. jiwei.hz.gov.cn")
@click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The witness's state (JSON): the last checkpoint cosigned per log.",
)
@click.option("--log-key", default=None, help="The log's note verifier key (vkey) to trust.")
@click.option(
    "--token",
    envvar="CIVIC_WITNESS_TOKEN",
    required=True,
    help="A bearer token (inspector) for the root; or CIVIC_WITNESS_TOKEN.",
)
def witness(
    url: str, node: str, key_path: str, name: str, state_path: str, log_key: str | None, token: str
) -> None:
    """Cosign the root's newest checkpoint if it extends the last one cosigned."""
    from pathlib import Path

    import httpx

    from civic_verify.witness import Refused
    from services.witness import witness_once

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            result = await witness_once(
                client,
                token=token,
                node=node,
                key_path=Path(key_path),
                name=name,
                state_path=Path(state_path),
                log_vkey=log_key,
            )
        if result.first_use:
            click.echo("warning: trusted the server's published key on first use", err=True)
        click.echo(f"cosigned {result.origin} at size {result.size}")

    try:
        asyncio.run(run())
    except Refused as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
