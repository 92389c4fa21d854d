"""The dashboard page's charts: scale, paths and their text alternative (issue 15)."""

from __future__ import annotations

from gateway.console.dashboard import CHARTS, chart_view
from qcare_ingest.dashboard_data import QueueDepth, Sample, snapshot
from qcare_ingest.topology import DLQ, QUEUE


def _samples() -> list[Sample]:
    def queues(main: int | None, dead: int | None) -> tuple[QueueDepth, ...]:
        return (QueueDepth(QUEUE, "main", main, 1), QueueDepth(DLQ, "dead-letter", dead, 0))

    return [
        Sample(1000.0, queues(40, 0), True, True, 10.0, 9.5, 0.05, 0.25),
        Sample(1005.0, queues(None, None), False, True, 12.0, 11.0, 0.06, 0.3),
        Sample(1010.0, queues(180, 2), True, True, 0.0, 8.0, 0.04, 0.2),
    ]


def test_each_chart_has_a_scale_a_path_per_series_and_a_description() -> None:
    data = snapshot(_samples())
    views = {c.key: chart_view(c, data) for c in CHARTS}
    depth = views["depth"]
    assert depth["top"] == "200"  # 180 rounded up to a readable scale
    assert [line["label"] for line in depth["lines"]] == [
        "Main queue", "Delay queues", "Dead-letter queue"
    ]  # fmt: skip
    main = depth["lines"][0]["d"]
    assert main.startswith("M")
    assert main.count("M") == 2  # the unknown sample breaks the line
    assert depth["lines"][1]["d"] == ""  # no delay queues in these samples: nothing drawn
    assert depth["desc"] == (
        "Queue depth over the last hour (messages). Main queue: now 180, highest 180; "
        "Delay queues: now unavailable, highest unavailable; "
        "Dead-letter queue: now 2, highest 2."
    )
    rate = views["rate"]
    assert rate["top"] == "20"
    assert "Accepted per second: now 0, highest 12" in rate["desc"]
    lag = views["lag"]
    assert lag["top"] == "1"
    assert "Lag p99: now 0.2, highest 0.3" in lag["desc"]


def test_no_samples_draws_empty_charts() -> None:
    data = snapshot([])
    for chart in CHARTS:
        view = chart_view(chart, data)
        assert view["top"] == "1"
        assert all(line["d"] == "" for line in view["lines"])
        assert "now unavailable" in view["desc"]
