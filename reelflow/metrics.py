"""Observability: Prometheus metrics, the worker's metrics endpoint, OpenTelemetry tracing.

Every reelflow metric is defined here, once, in prometheus-client's default registry, and is
counted where the thing happens: webhook deliveries in the API process (`reelflow.webhooks`),
jobs, polls, re-hosted bytes and cost in the worker process (`activities/`). Each process serves
its own registry:

- the API at `GET /metrics` (`api/routes/metrics.py`);
- the worker on `WORKER_METRICS_HOST:WORKER_METRICS_PORT` (`serve_worker_metrics`), which also
  serves the Temporal SDK's own metrics (`temporal_*`): the SDK exports them on a loopback port
  of its own, and a collector copies them into each scrape, so one port serves both.

Tracing is off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, read into
`Settings.otel_exporter_otlp_endpoint`); then spans go over OTLP/HTTP from FastAPI's requests and
from Temporal's client, workflow and activity calls
(`temporalio.contrib.opentelemetry.TracingInterceptor`), linked across processes.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from reelflow.netguard import redact_url

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.trace import Span
    from temporalio.client import Interceptor

__all__ = [
    "BYTES_REHOSTED",
    "ESTIMATED_COST_USD",
    "JOBS_COMPLETED",
    "JOBS_FAILED",
    "JOBS_STARTED",
    "POLLS",
    "PROVIDER_TO_STORED_SECONDS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_RESULTS",
    "configure_tracing",
    "instrument_app",
    "serve_worker_metrics",
    "temporal_interceptors",
]

logger = logging.getLogger(__name__)

# No `*_created` series beside every counter and histogram: Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client omits it

# prometheus-client appends `_total` to counter names: `reelflow_jobs_started_total`, ….

JOBS_STARTED = Counter(
    "reelflow_jobs_started",
    "Provider jobs created at a provider (a retried start that reuses its job is not counted).",
    ["provider", "model"],
)
JOBS_COMPLETED = Counter(
    "reelflow_jobs_completed",
    "Provider jobs completed, their outputs stored.",
    ["provider", "model"],
)
JOBS_FAILED = Counter(
    "reelflow_jobs_failed",
    "Provider jobs failed (at the provider, past their deadline, or storing their outputs).",
    ["provider", "model"],
)
POLLS = Counter(
    "reelflow_polls",
    "Status requests sent to a provider by the polling activity.",
    ["provider"],
)
BYTES_REHOSTED = Counter(
    "reelflow_rehosted_bytes",
    "Bytes of provider outputs written to the object store (a retried upload counts again).",
    ["provider"],
)
ESTIMATED_COST_USD = Counter(
    "reelflow_estimated_cost_usd",
    "Estimated cost of completed jobs in US dollars, from the model registry's prices.",
    ["provider", "model"],
)
PROVIDER_TO_STORED_SECONDS = Histogram(
    "reelflow_provider_to_stored_seconds",
    "From the moment the workflow learned that the provider finished (webhook or poll) to the"
    " job's outputs being stored.",
    ["provider"],
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)

WEBHOOK_RESULTS = (
    "accepted",
    "duplicate",
    "bad_signature",
    "bad_token",
    "unknown",
    "untracked",
    "error",
)
"""What became of a webhook delivery: accepted (a signal, a progress update or a job already
finished); a duplicate delivery; refused (a bad or stale signature, a bad URL token, an unknown
job); genuine but about a provider job that the job does not track; or not handled (verification
unavailable, or a failure of ours), which the provider delivers again."""

WEBHOOK_DELIVERIES = Counter(
    "reelflow_webhook_deliveries",
    "Provider webhook deliveries received by the API, by result.",
    ["result"],
)


# The worker's endpoint.

_SDK_SCRAPE_TIMEOUT_S = 5.0


class _TemporalSdkMetrics(Collector):
    """Copies the Temporal SDK's Prometheus metrics into our registry at each scrape."""

    def __init__(self, url: str) -> None:
        self._url = url

    def describe(self) -> Iterable[Metric]:
        # Nothing to declare up front; registering must not scrape the SDK.
        return []

    def collect(self) -> Iterable[Metric]:
        try:
            # Runs in prometheus-client's server thread, where blocking is fine.
            with urllib.request.urlopen(self._url, timeout=_SDK_SCRAPE_TIMEOUT_S) as response:
                text = response.read().decode()
        except OSError as error:
            # Our own metrics are still worth serving.
            logger.warning("Could not read the Temporal SDK's metrics: %s", error)
            return []
        return list(text_string_to_metric_families(text))


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_worker_metrics(*, host: str, port: int) -> Runtime:
    """Serve the worker's metrics, ours and the Temporal SDK's, on host:port at `/metrics`.

    Returns the Temporal runtime whose metrics are served: connect the worker's client with it
    (`Client.connect(..., runtime=runtime)`). Port 0 serves nothing (the runtime exports no
    metrics). A port already in use is logged as an error, not raised: the worker still works.
    """
    if port == 0:
        return Runtime(telemetry=TelemetryConfig())
    sdk_port = _free_loopback_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{sdk_port}",
                # Prometheus' conventions: counters end in `_total`, durations are seconds.
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )
    REGISTRY.register(_TemporalSdkMetrics(f"http://127.0.0.1:{sdk_port}/metrics"))
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        logger.error("Worker metrics are not served: cannot listen on %s:%d: %s", host, port, error)
    else:
        logger.info("Worker metrics on http://%s:%d/metrics", host, port)
    return runtime


# Tracing.

_tracing_on = False


def configure_tracing(*, service_name: str, endpoint: str | None) -> bool:
    """Send this process's spans to an OTLP/HTTP collector at `endpoint` (e.g.
    `http://otel-collector:4318`), when it is set; returns whether tracing is on.

    Call it once per process, before connecting to Temporal, so `temporal_interceptors` sees it.
    """
    global _tracing_on
    if not endpoint or _tracing_on:
        return _tracing_on
    # Imported here: only needed when tracing is on.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    _tracing_on = True
    logger.info("Tracing to %s as %s", endpoint, service_name)
    return True


def temporal_interceptors() -> list[Interceptor]:
    """The interceptors of a Temporal client: OpenTelemetry tracing when it is on (they apply
    to the workers built on the client too)."""
    if not _tracing_on:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_app(app: FastAPI) -> None:
    """Trace the API's requests when tracing is on; probes and scrapes are left out."""
    if not _tracing_on:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="/healthz,/readyz,/metrics",
        server_request_hook=_redact_query,
    )


def _redact_query(span: Span, scope: dict[str, Any]) -> None:
    # Webhook URLs carry a per-job token in their query string: it must not reach a span.
    attributes = getattr(span, "attributes", None)
    if not span.is_recording() or not attributes:
        return
    for name in ("http.url", "url.full"):
        if name in attributes:
            span.set_attribute(name, redact_url(str(attributes[name])))
    if "url.query" in attributes:
        span.set_attribute("url.query", "redacted")
