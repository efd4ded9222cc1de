"""The Grafana dashboard (deploy/grafana/shopflow.json) and the metrics its PromQL reads,
for tests/unit/test_dashboard.py (the code declares them) and
tests/integration/test_worker_http.py (a running worker exports them).

PromQL is read by a small tokenizer, not a full parser: it refuses what it does not
know (a character, an unbalanced bracket, a function that PromQL does not have), and
finds the metric names (identifiers that are not a function, a keyword, a label or a
Grafana variable) and the labels of `by (...)` and `without (...)`.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "shopflow.json"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PromQL's aggregation operators and functions (Prometheus 2.x/3.x).
AGGREGATIONS = _words(
    """sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio"""
)
FUNCTIONS = AGGREGATIONS | _words(
    """abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month
    day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_sum histogram_stddev
    histogram_stdvar holt_winters double_exponential_smoothing hour idelta increase irate
    label_join label_replace ln log2 log10 minute month predict_linear rate resets round
    scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector
    year avg_over_time min_over_time max_over_time sum_over_time count_over_time
    quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time
    mad_over_time acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg pi rad"""
)
KEYWORDS = _words("and or unless bool offset atan2")
GROUPING = _words("by without on ignoring group_left group_right")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
    | (?P<variable>\$\{[A-Za-z_][A-Za-z0-9_:]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)
    | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
    | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<operator>==|!=|=~|!~|>=|<=|[-+*/%^<>=,:@])
    | (?P<open>[({\[])
    | (?P<close>[)}\]])
    """,
    re.VERBOSE,
)
_PAIRS = {")": "(", "}": "{", "]": "["}


class PromQLError(ValueError):
    pass


@dataclass
class Query:
    expression: str
    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    grouping_labels: set[str] = field(default_factory=set)
    matcher_labels: set[str] = field(default_factory=set)


def parse(expression: str) -> Query:
    """The metrics, functions and labels `expression` uses; PromQLError if it is not
    PromQL this reader understands."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise PromQLError(f"unexpected {expression[position:]!r} in {expression!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))

    query = Query(expression)
    brackets: list[str] = []
    label_list: set[str] | None = None  # where the labels of by (...), on (...) go
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        inside = brackets[-1] if brackets else ""
        if kind == "open":
            brackets.append(text)
        elif kind == "close":
            if not brackets or brackets.pop() != _PAIRS[text]:
                raise PromQLError(f"unbalanced {text!r} in {expression!r}")
            label_list = None
        elif kind != "identifier":
            continue
        elif label_list is not None:
            label_list.add(text)
        elif inside == "{":
            if following in ("=", "!=", "=~", "!~"):
                query.matcher_labels.add(text)
        elif inside == "[":
            raise PromQLError(f"{text!r} inside a range in {expression!r}")
        elif text in GROUPING and following == "(":
            by = text in ("by", "without")
            label_list = query.grouping_labels if by else query.matcher_labels
        elif text in GROUPING and text not in ("group_left", "group_right"):
            raise PromQLError(f"{text} without its labels in {expression!r}")
        elif text in AGGREGATIONS and following in ("by", "without"):
            query.functions.add(text)  # sum by (...) (...)
        elif following == "(":
            if text not in FUNCTIONS:
                raise PromQLError(f"{text}() is not a PromQL function, in {expression!r}")
            query.functions.add(text)
        elif text not in KEYWORDS and text not in GROUPING:
            query.metrics.add(text)
    if brackets:
        raise PromQLError(f"unclosed {brackets[-1]!r} in {expression!r}")
    if not query.metrics:
        raise PromQLError(f"no metric in {expression!r}")
    return query


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        parse(target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# The sample names a family of each type exposes (its `_created` series left out).
_SUFFIXES = {
    "counter": ("",),  # the exposition's TYPE line already names the _total series
    "gauge": ("",),
    "untyped": ("",),
    "unknown": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)


def declared(exposition: str) -> set[str]:
    """The sample names that the families in a Prometheus text exposition declare,
    whether or not they have a sample yet (a labelled counter never incremented)."""
    return {
        name + suffix
        for name, kind in _TYPE_LINE.findall(exposition)
        for suffix in _SUFFIXES.get(kind, ("",))
    }


def total(exposition: str, name: str) -> float:
    """The sum of every sample named `name` in the exposition (0 if none)."""
    return sum(value for _, value in series(exposition).get(name, []))


def series(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of every sample in the exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found
