"""All of reelflow's knobs, read from the environment (and `.env`) by one Settings class."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """reelflow configuration. Secrets have no default and are never logged."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Embedded state (Temporal's SQLite file, pgserver's data, local object store).
    state_dir: Path = Path(".reelflow")

    # PostgreSQL. Unset means "start an embedded pgserver under state_dir".
    database_url: str | None = None

    # Temporal.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # Where the run viewer links each execution's workflow.
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "reelflow"

    # API keys, `tenant:key,tenant:key`; unset means an open API that binds to loopback only.
    reelflow_api_keys: SecretStr | None = None
    # Secret of the per-job tokens in webhook URLs; shared by every API process. Unset: one is
    # created in the state dir.
    webhook_token_secret: SecretStr | None = None

    # HTTP API. api_base_url is the public URL providers call back; unset means polling only.
    api_host: str = "127.0.0.1"
    api_port: int = 3000
    api_base_url: str | None = None
    # Idle keep-alive connections to the API and the emulator stay open this long. It must
    # outlast every pooled client's idle time (httpx keeps connections 5 s, load balancers often
    # 60 s): a server that closes first races a client reusing the connection, which then gets a
    # reset (httpx.ReadError, a 502 from the balancer) instead of a response.
    http_keepalive_s: int = 75

    # Object storage: S3-compatible when s3_bucket is set, else a local directory.
    s3_url: str | None = None
    s3_region: str = "auto"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str | None = None
    cdn_base_url: str | None = None
    storage_dir: Path | None = None

    # Replicate.
    replicate_api_token: SecretStr | None = None
    replicate_api_base: str = "https://api.replicate.com"
    replicate_webhook_secret: SecretStr | None = None

    # fal.ai.
    fal_key: SecretStr | None = None
    fal_queue_base: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"

    # Google Gemini API (Veo).
    gemini_api_key: SecretStr | None = None
    gemini_api_base: str = "https://generativelanguage.googleapis.com"

    # Provider calls per second, per provider, across all workers (Temporal enforces it on
    # each provider's task queue). Replicate allows 600 creates/min; fal and Google are
    # similar; the defaults leave headroom for other clients of the same account.
    replicate_activities_per_second: float = Field(default=8.0, gt=0)
    fal_activities_per_second: float = Field(default=8.0, gt=0)
    veo_activities_per_second: float = Field(default=2.0, gt=0)

    # Provider emulator (`reelflow emulator`).
    emulator_host: str = "127.0.0.1"
    emulator_port: int = 3001
    emulator_generation_seconds: float = 3.0

    # Polling: first poll after POLL_INITIAL_BACKOFF_S, then each gap times the multiplier.
    poll_initial_backoff_s: float = Field(default=5.0, gt=0)
    poll_backoff_multiplier: float = Field(default=1.5, ge=1)
    poll_max_interval_s: float = Field(default=60.0, gt=0)
    poll_max_attempts: int = Field(default=100, ge=1)
    # Jobs started together would otherwise poll in the same instant, every time: a burst
    # against the provider's rate limit, and results that queue behind one another.
    poll_jitter: float = Field(default=0.1, ge=0, lt=1)
    # Webhook jobs still poll, sparsely, in case a webhook never arrives (providers retry
    # their webhooks, so this is rarely what finds a result). Each poll costs ~10 ms of worker
    # CPU and a provider API call: every 5 minutes keeps 1,000 waiting jobs under 5 % of a
    # core and 200 calls a minute (bench/, scenario 4).
    webhook_safety_poll_s: float = Field(default=300.0, gt=0)

    # Media operations (concat, thumbnail) one worker process runs at once; each takes a core.
    max_concurrent_media_jobs: int = Field(default=2, ge=1)

    # Metrics: the API serves /metrics (behind `Bearer $METRICS_TOKEN` when set); the worker
    # serves its own and the Temporal SDK's on a port of its own.
    metrics_token: SecretStr | None = None
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Tracing: OTLP/HTTP collector (`http://otel-collector:4318`) of the API's and the worker's
    # spans; unset or empty means no tracing. The standard OpenTelemetry variable name.
    otel_exporter_otlp_endpoint: str | None = None

    # Jobs of one execution running at once; the rest wait for a free slot.
    max_parallel_jobs: int = Field(default=50, ge=1, le=1000)
    # Largest accepted `POST /api/execute` body.
    max_plan_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Retention: when RETENTION_DAYS is set, the worker keeps a daily Temporal schedule
    # (`reelflow-retention`) deleting executions finished more than that many days ago, with
    # their jobs, webhook delivery records and, with RETENTION_DELETE_OBJECTS, their outputs.
    retention_days: int | None = Field(default=None, ge=1)
    retention_delete_objects: bool = False

    # HTTP timeouts for provider calls and downloads.
    http_timeout_s: float = Field(default=30.0, gt=0)

    # Downloads (reelflow.netguard). Host lists are comma-separated; an entry is `host` or
    # `*.host` (subdomains only), optionally with a path prefix (`storage.googleapis.com/b/`),
    # and allows https on port 443 to public addresses only. Redirects must stay within them.
    # Where each provider's output URLs may be:
    replicate_output_hosts: str = "replicate.delivery,*.replicate.delivery"
    fal_output_hosts: str = "fal.media,*.fal.media,storage.googleapis.com/falserverless/"
    veo_output_hosts: str = "generativelanguage.googleapis.com,*.googleusercontent.com"
    # Where media inputs (concat/thumbnail URLs in plans) and Veo input images may be, besides
    # our own store and the provider output hosts above.
    media_input_allowed_hosts: str = ""
    # Exact origins (`scheme://host:port`) every download may reach, even over plain http and at
    # a private address: the emulator in dev and tests. Keep empty in production.
    download_allowed_origins: str = ""
    # Outputs and media inputs larger than this are refused rather than filling the disk.
    max_output_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_media_input_bytes: int = Field(default=2 * 1024**3, ge=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_dsn(cls, value: str | None) -> str | None:
        """Accept `postgres://` and SQLAlchemy-style URLs; keep a plain `postgresql://` DSN."""
        if value is None or not value.strip():
            return None
        for prefix in ("postgres://", "postgresql+asyncpg://", "postgresql+psycopg://"):
            if value.startswith(prefix):
                return "postgresql://" + value.removeprefix(prefix)
        return value

    @field_validator(
        "api_base_url",
        "cdn_base_url",
        "s3_url",
        "replicate_api_base",
        "fal_queue_base",
        "gemini_api_base",
    )
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    def output_hosts(self, provider: str) -> str:
        """The configured hosts a provider's output URLs may be on (comma-separated)."""
        hosts: str = getattr(self, f"{provider}_output_hosts")
        return hosts

    def activities_per_second(self, provider: str) -> float:
        """The configured rate limit of a provider's task queue."""
        limit: float = getattr(self, f"{provider}_activities_per_second")
        return limit

    @property
    def files_dir(self) -> Path:
        """Directory of the local object store."""
        return self.storage_dir or self.state_dir / "files"

    @property
    def public_files_base(self) -> str:
        """Base URL under which stored objects are served."""
        if self.cdn_base_url:
            return self.cdn_base_url
        api = self.api_base_url or f"http://{self.api_host}:{self.api_port}"
        return f"{api}/files"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
