"""Settings, read once from the environment by the entry point and passed down explicitly."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    env: str = "development"
    data_dir: Path = Path(".data")
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_url: str | None = None
    jwks_timeout_seconds: float = 3.0
    jwks_min_refresh_seconds: float = 30.0
    jwks_max_age_seconds: float = 3600.0
    signing_key: str | None = None
    pii_master_key: str | None = None
    pii_index_key: str | None = None
    pool_min: int = 2
    pool_max: int = 10
    #: seconds a released pooled connection may sit unused before the pool closes it
    pool_idle_seconds: float = 300.0
    run_projector: bool = True
    migrate_on_start: bool = True
    log_level: str = "INFO"
    nats_url: str | None = None
    nats_stream: str = "CIVIC"
    nats_subject_prefix: str = "civic"
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 1.0
    webhook_retry_cap_seconds: float = 300.0
    webhook_timeout_seconds: float = 5.0
    feed_heartbeat_seconds: float = 15.0
    feed_max_stream_seconds: float = 300.0
    #: per principal. ``POST /v1/issues`` peaks near 600 requests/s for the whole server
    #: (README "Performance", 2 cores): 1,200/min (20/s) lets one token take at most about
    #: a thirtieth of that, sustained, while a minute's burst still covers a batch import
    #: client or a console page's fan-out of reads.
    rate_limit_per_minute: int = 1200
    #: requests without a usable token, per client address (401s, the schema, the public
    #: key): cheap to answer, but each bad token costs a signature check.
    anonymous_rate_limit_per_minute: int = 120
    max_waits_per_principal: int = 4
    max_streams_per_principal: int = 4
    #: server-wide concurrent heavy audit/export requests (see services/limits.py).
    heavy_concurrency: int = 2
    #: hosts webhooks may reach although they resolve to internal addresses.
    webhook_allow_hosts: tuple[str, ...] = ()
    metrics_token: str | None = None
    metrics_public: bool = False
    #: request line and header block caps (414 / 431), and how long a client may take to
    #: send its header block, or stay idle between requests.
    max_request_line_bytes: int = 8192
    max_header_bytes: int = 16384
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: int = 5
    max_body_bytes: int = 1_048_576
    statement_timeout_ms: int = 30_000
    clock_interval_seconds: float = 5.0
    checkpoint_interval_seconds: float = 3600.0
    #: a command that loaded this many events past a stream's snapshot (or past none)
    #: writes a new one with its COMMIT (infra/snapshots.py); 0: no snapshots are written.
    snapshot_every: int = 100
    #: a command on an aggregate (or node) this process has not cached reads it in one
    #: autocommit statement and appends in another (services/commands/session.py); off: it
    #: runs in a scoped transaction, as a command that needs more does (kept to measure and
    #: to rule the path out).
    cold_reads: bool = True
    #: 五单: minutes a dispatched service order may wait for 接单 before ServiceOverdue.
    service_accept_minutes: int = 24 * 60
    #: 五单 评单: points a member earns per rating, ``rating:points`` pairs (see domain.service).
    points_per_rating: str = "5:10"
    #: standard (SHA-256, AES-256-GCM) or gm (国密: SM3 chains and tree, SM4-GCM personal data)
    crypto_profile: str = "standard"
    #: the key name of checkpoint notes and the first part of each root's log origin
    log_name: str = "civic-ledger"
    #: the language of problem details when a request sends no Accept-Language
    default_language: str = "zh-CN"
    #: where clients reach this API (absolute); CloudEvents name their data schema under it.
    #: Default: http://HOST:PORT
    public_url: str | None = None

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name)
            return default if raw is None else raw.strip().lower() in {"1", "true", "yes", "on"}

        return cls(
            database_url=env.get("DATABASE_URL") or None,
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "8000")),
            env=env.get("CIVIC_ENV", "development"),
            data_dir=Path(env.get("CIVIC_DATA_DIR", ".data")),
            jwt_secret=env.get("CIVIC_JWT_SECRET") or None,
            jwt_public_key=env.get("CIVIC_JWT_PUBLIC_KEY") or None,
            jwt_algorithms=tuple(
                a.strip()
                for a in env.get(
                    "CIVIC_JWT_ALGORITHMS",
                    "RS256,ES256" if env.get("CIVIC_JWKS_URL") else "HS256",
                ).split(",")
                if a.strip()
            ),
            jwt_issuer=env.get("CIVIC_JWT_ISSUER") or None,
            jwt_audience=env.get("CIVIC_JWT_AUDIENCE") or None,
            jwks_url=env.get("CIVIC_JWKS_URL") or None,
            jwks_timeout_seconds=float(env.get("CIVIC_JWKS_TIMEOUT", "3")),
            jwks_min_refresh_seconds=float(env.get("CIVIC_JWKS_MIN_REFRESH", "30")),
            jwks_max_age_seconds=float(env.get("CIVIC_JWKS_MAX_AGE", "3600")),
            signing_key=env.get("CIVIC_SIGNING_KEY") or None,
            pii_master_key=env.get("CIVIC_PII_MASTER_KEY") or None,
            pii_index_key=env.get("CIVIC_PII_INDEX_KEY") or None,
            pool_min=int(env.get("CIVIC_DB_POOL_MIN", "2")),
            pool_max=int(env.get("CIVIC_DB_POOL_MAX", "10")),
            pool_idle_seconds=float(env.get("CIVIC_DB_POOL_IDLE_SECONDS", "300")),
            run_projector=flag("CIVIC_RUN_PROJECTOR", True),
            migrate_on_start=flag("CIVIC_MIGRATE_ON_START", True),
            log_level=env.get("CIVIC_LOG_LEVEL", "INFO"),
            nats_url=env.get("CIVIC_NATS_URL") or None,
            nats_stream=env.get("CIVIC_NATS_STREAM", "CIVIC"),
            nats_subject_prefix=env.get("CIVIC_NATS_SUBJECT_PREFIX", "civic"),
            webhook_max_attempts=int(env.get("CIVIC_WEBHOOK_MAX_ATTEMPTS", "8")),
            webhook_retry_base_seconds=float(env.get("CIVIC_WEBHOOK_RETRY_BASE", "1")),
            webhook_retry_cap_seconds=float(env.get("CIVIC_WEBHOOK_RETRY_CAP", "300")),
            webhook_timeout_seconds=float(env.get("CIVIC_WEBHOOK_TIMEOUT", "5")),
            feed_heartbeat_seconds=float(env.get("CIVIC_FEED_HEARTBEAT", "15")),
            feed_max_stream_seconds=float(env.get("CIVIC_FEED_MAX_STREAM", "300")),
            rate_limit_per_minute=int(env.get("CIVIC_RATE_LIMIT", "1200")),
            anonymous_rate_limit_per_minute=int(env.get("CIVIC_ANON_RATE_LIMIT", "120")),
            max_waits_per_principal=int(env.get("CIVIC_MAX_WAITS_PER_PRINCIPAL", "4")),
            max_streams_per_principal=int(env.get("CIVIC_MAX_STREAMS_PER_PRINCIPAL", "4")),
            heavy_concurrency=int(env.get("CIVIC_HEAVY_CONCURRENCY", "2")),
            webhook_allow_hosts=tuple(
                h.strip().lower().rstrip(".")
                for h in env.get("CIVIC_WEBHOOK_ALLOW_HOSTS", "").split(",")
                if h.strip()
            ),
            metrics_token=env.get("CIVIC_METRICS_TOKEN") or None,
            metrics_public=flag("CIVIC_METRICS_PUBLIC", False),
            max_request_line_bytes=int(env.get("CIVIC_MAX_REQUEST_LINE", "8192")),
            max_header_bytes=int(env.get("CIVIC_MAX_HEADER_BYTES", "16384")),
            header_timeout_seconds=float(env.get("CIVIC_HEADER_TIMEOUT", "10")),
            keepalive_timeout_seconds=int(env.get("CIVIC_KEEPALIVE_TIMEOUT", "5")),
            clock_interval_seconds=float(env.get("CIVIC_CLOCK_INTERVAL", "5")),
            checkpoint_interval_seconds=float(env.get("CIVIC_CHECKPOINT_INTERVAL", "3600")),
            snapshot_every=int(env.get("CIVIC_SNAPSHOT_EVERY", "100")),
            cold_reads=flag("CIVIC_COLD_READS", True),
            service_accept_minutes=int(env.get("CIVIC_SERVICE_ACCEPT_MINUTES", str(24 * 60))),
            points_per_rating=env.get("CIVIC_POINTS_PER_RATING", "5:10"),
            crypto_profile=env.get("CIVIC_CRYPTO_PROFILE", "standard").strip().lower(),
            log_name=env.get("CIVIC_LOG_NAME", "civic-ledger").strip(),
            default_language=env.get("CIVIC_DEFAULT_LANGUAGE", "zh-CN"),
            public_url=env.get("CIVIC_PUBLIC_URL") or None,
        )
