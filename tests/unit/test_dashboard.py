"""The Grafana dashboard (deploy/grafana/shopflow.json): every PromQL expression reads,
every metric it reads is one the code declares, and it shows what operators need (no
I/O; tests/integration/test_worker_http.py holds it to a running worker's /metrics)."""

import pytest
from prometheus_client import REGISTRY, generate_latest

import shopflow.queries.top_products  # noqa: F401  (declares the read side's fallback counter)
from shopflow.runtime import build_broker
from shopflow.settings import Settings
from tests.support import dashboard
from tests.support.fakes import UNIT_KAFKA


def test_every_panel_is_well_formed() -> None:
    board = dashboard.load()
    panels = dashboard.panels(board)

    assert board["uid"] == "shopflow"
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_expression_reads_and_the_dashboard_shows_what_operators_need() -> None:
    board = dashboard.load()
    queries = dashboard.queries(board)  # raises on an expression it cannot read
    read = set().union(*(q.metrics for q in queries))

    assert len(queries) == sum(len(p["targets"]) for p in dashboard.panels(board))
    assert {
        "shopflow_commands_total",  # throughput by topic and outcome
        "shopflow_dead_letters_total",  # dead letters by reason
        "shopflow_batch_seconds_bucket",  # batch duration quantiles
        "shopflow_consumer_lag",
        "shopflow_top_products_fallback_total",
        "faststream_received_messages_total",
        "faststream_received_processed_messages_duration_seconds_bucket",
    } <= read
    by_metric = {m: q for q in queries for m in q.metrics}
    assert {"topic", "outcome"} <= by_metric["shopflow_commands_total"].grouping_labels
    assert "reason" in by_metric["shopflow_dead_letters_total"].grouping_labels
    assert {"group", "topic", "partition"} <= by_metric["shopflow_consumer_lag"].grouping_labels
    quantiles = [q for q in queries if "shopflow_batch_seconds_bucket" in q.metrics]
    assert all("histogram_quantile" in q.functions for q in quantiles)
    assert all("le" in q.grouping_labels for q in quantiles)


def test_every_metric_the_dashboard_reads_is_declared_by_the_code() -> None:
    build_broker(Settings(), UNIT_KAFKA)  # FastStream's middleware registers its metrics
    declared = dashboard.declared(generate_latest(REGISTRY).decode())
    read = set().union(*(q.metrics for q in dashboard.queries(dashboard.load())))

    assert read - declared == set()


def test_the_reader_finds_metrics_functions_and_labels() -> None:
    query = dashboard.parse(
        'sum by (topic, le) (rate(shopflow_batch_seconds_bucket{topic=~"$topic"}'
        "[$__rate_interval] offset 5m)) / on (topic) group_left max(shopflow_x)"
    )

    assert query.metrics == {"shopflow_batch_seconds_bucket", "shopflow_x"}
    assert query.functions == {"sum", "rate", "max"}
    assert query.grouping_labels == {"topic", "le"}
    assert query.matcher_labels == {"topic"}
    assert dashboard.parse("histogram_quantile(0.99, sum(rate(a[5m])) by (le))").metrics == {"a"}


@pytest.mark.parametrize(
    "expression",
    [
        "sum(rate(a[5m])",  # unclosed
        "sum(rate(a[5m]))]",  # unbalanced
        "rat(a[5m])",  # not a function
        "sum by topic (a)",  # by without its parentheses
        "a # comment",  # not PromQL
        "0.99",  # no metric
    ],
)
def test_the_reader_refuses_what_is_not_promql(expression: str) -> None:
    with pytest.raises(dashboard.PromQLError):
        dashboard.parse(expression)


def test_declared_names_come_from_type_lines_with_the_samples_of_each_type() -> None:
    exposition = (
        "# HELP c_total a counter\n# TYPE c_total counter\n"
        "# HELP h a histogram\n# TYPE h histogram\n"
        "# HELP g a gauge\n# TYPE g gauge\ng 1.0\n"
    )

    assert dashboard.declared(exposition) == {"c_total", "h_bucket", "h_count", "h_sum", "g"}
    assert dashboard.series(exposition) == {"g": [({}, 1.0)]}


def test_a_total_sums_every_labelled_sample_of_its_name() -> None:
    exposition = (
        "# HELP c_total a counter\n# TYPE c_total counter\n"
        'c_total{result="new"} 2.0\nc_total{result="duplicate"} 3.0\n'
        "# HELP d_total another\n# TYPE d_total counter\nd_total 7.0\n"
    )

    assert dashboard.total(exposition, "c_total") == 5.0
    assert dashboard.total(exposition, "missing_total") == 0.0
