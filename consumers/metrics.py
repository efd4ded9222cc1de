"""Prometheus metrics of the command consumers (served at GET /metrics)."""

from prometheus_client import Counter, Histogram

COMMANDS = Counter(
    "shopflow_commands_total",
    "Commands answered, by command topic and outcome.",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "shopflow_dead_letters_total",
    "Messages sent to the dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
)
BATCH_SECONDS = Histogram(
    "shopflow_batch_seconds",
    "Time from a batch handed to the pipeline until its results are handed to the producer "
    "(their delivery and the offset commit go on behind the next batch).",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "shopflow_batch_size",
    "Records per consumed batch.",
    ["topic"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
BATCH_FAILURES = Counter(
    "shopflow_batch_failures_total",
    "Batches that could not be completed (a transient error) and were sought back for redelivery.",
    ["topic"],
)
ISOLATIONS = Counter(
    "shopflow_batch_isolations_total",
    "Batches (or halves of one) split because they failed with an error that is not "
    "transient, to isolate the record that fails.",
    ["topic"],
)
POISON_RECORDS = Counter(
    "shopflow_poison_records_total",
    "Records that failed alone on every attempt and became processing_failed dead letters.",
    ["topic"],
)
