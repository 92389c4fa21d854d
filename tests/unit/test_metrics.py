from __future__ import annotations

from prometheus_client import REGISTRY

from qcare_ingest import metrics


def _count(route: str, method: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "qcare_http_requests_total", {"route": route, "method": method, "status": status}
    )
    return value or 0.0


def test_unknown_methods_share_one_label() -> None:
    route = "/unit-test-route"
    for method in ("BREW", "PROPFIND", "X-RANDOM-1"):
        metrics.http_request(route, method, 405, 0.001)
    metrics.http_request(route, "POST", 200, 0.001)
    assert _count(route, "OTHER", "405") == 3
    assert _count(route, "BREW", "405") == 0
    assert _count(route, "POST", "200") == 1
