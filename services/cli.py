"""The ``civic`` command line: serve, project, migrate, token, dev, projections."""

from __future__ import annotations

import asyncio
import os
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

    app = create_app(settings, api=api)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
        proxy_headers=True,
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
    from services.app import resolve_database_url
    from services.auth import issue_token
    from services.keys import jwt_config

    base = Settings.from_env()
    if base.is_production:
        raise click.UsageError("civic dev is for development; use civic serve in production")
    settings = _settings(host=host or base.host, port=port or base.port)
    click.echo("starting PostgreSQL..." if not settings.database_url else "using DATABASE_URL")
    database_url = resolve_database_url(settings)
    settings = _settings(host=settings.host, port=settings.port, database_url=database_url)
    scope = os.environ.get("CIVIC_DEV_SCOPE", DEV_SCOPE)
    tok = issue_token(jwt_config(settings), subject="dev-admin", scope=scope, roles=["admin"])
    url = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"\ncivic-ledger is starting\n"
        f"  API:   {url}\n"
        f"  Docs:  {url}/schema\n"
        f"  Token (admin, scope {scope}, 8 h):\n    {tok}\n\n"
        f"  export TOKEN={tok}\n"
        f'  curl -s -X POST {url}/v1/nodes -H "Authorization: Bearer $TOKEN" '
        f"-H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"code":"{scope}","name":"西湖区","kind":"county","parent_code":null}}\'\n',
    )
    sys.stdout.flush()
    _serve(settings)


@main.group()
def projections() -> None:
    """Inspect and rebuild projections."""


@projections.command("status")
def projections_status() -> None:
    """Each projection's checkpoint, error and lag."""
    from services.app import resolve_database_url

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(resolve_database_url(Settings.from_env()))
        try:
            horizon = await conn.fetchval("SELECT civic_horizon()")
            rows = await conn.fetch(
                "SELECT c.name, c.position, c.updated_at, c.error,"
                " (SELECT count(*) FROM events e WHERE e.position > c.position"
                "  AND e.position < $1) AS behind"
                " FROM projection_checkpoints c ORDER BY c.name",
                horizon,
            )
        finally:
            await conn.close()
        from rich.console import Console
        from rich.table import Table

        table = Table(title="projections")
        for col in ("name", "position", "events behind", "updated", "error"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["name"],
                str(r["position"]),
                str(r["behind"]),
                r["updated_at"].isoformat(timespec="seconds"),
                r["error"] or "",
            )
        Console().print(table)

    asyncio.run(run())


if __name__ == "__main__":
    main()
