"""Prometheus metrics (prometheus-client). Labels never carry personal data or msg_ids."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

HTTP_REQUESTS = Counter(
    "qcare_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "qcare_http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
PUBLISH_LATENCY = Histogram(
    "qcare_publish_duration_seconds",
    "Confirmed publish latency at the gateway",
    buckets=LATENCY_BUCKETS,
)
PUBLISH_FAILURES = Counter("qcare_publish_failures_total", "Publishes answered with 503")
MESSAGES = Counter("qcare_messages_total", "Messages processed by outcome", ["outcome"])
PROCESSING = Histogram(
    "qcare_message_processing_seconds", "Worker time per message", buckets=LATENCY_BUCKETS
)
RETRIES = Counter("qcare_retries_total", "In-process retries of transient errors")
DEAD_LETTERED = Counter("qcare_dead_lettered_total", "Messages dead-lettered", ["reason"])
DB_WAITS = Counter("qcare_db_unavailable_waits_total", "Waits because PostgreSQL was away")
LAG = Histogram(
    "qcare_end_to_end_lag_seconds",
    "Applied time minus gateway receipt time",
    buckets=LAG_BUCKETS,
)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_REQUESTS: dict[tuple[str, str, int], Any] = {}
_LATENCY: dict[str, Any] = {}


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count and time one request; the labelled children are looked up once per label set.
    Any other method counts as OTHER: a client must not be able to grow the label set."""
    key = (route, method if method in _METHODS else "OTHER", status)
    counter = _REQUESTS.get(key)
    if counter is None:
        counter = _REQUESTS[key] = HTTP_REQUESTS.labels(key[0], key[1], str(status))
    counter.inc()
    latency = _LATENCY.get(route)
    if latency is None:
        latency = _LATENCY[route] = HTTP_LATENCY.labels(route)
    latency.observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
