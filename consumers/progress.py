"""Per-partition progress of the consumers, for the first thing operators look for: a
partition that has not advanced while records wait on it.

Exported at scrape time (a custom collector, so the figures are current without a
ticker): `shopflow_partition_stalled_seconds{topic,partition}` (how long since it last
advanced, counted while records wait or a batch of it keeps failing; 0 otherwise) and
`shopflow_partition_failing{topic,partition}` (1 while its current batch is failing and
being redelivered). The lag kept here (records behind the partition's end as of its
last completed batch) only decides whether records wait; the exported lag,
`shopflow_consumer_lag{group,topic,partition}`, is read from the consumers themselves at
scrape time (`consumers.consumer_state`), so it goes on growing behind a consumer that
completes no batch and is gone for a partition a rebalance took away.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class _Partition:
    last_progress: float
    lag: int = 0
    failing_since: float | None = None


class PartitionProgress(Collector):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def _get(self, topic: str, partition: int) -> _Partition:
        found = self._partitions.get((topic, partition))
        if found is None:
            found = self._partitions[(topic, partition)] = _Partition(self._clock())
        return found

    def advanced(self, topic: str, partition: int, lag: int | None) -> None:
        state = self._get(topic, partition)
        state.last_progress = self._clock()
        state.failing_since = None
        if lag is not None:
            state.lag = max(0, lag)

    def failed(self, topic: str, partitions: Iterable[int]) -> float:
        """Mark the partitions' batch as failing; returns how long the longest has been."""
        now = self._clock()
        longest = 0.0
        for partition in partitions:
            state = self._get(topic, partition)
            if state.failing_since is None:
                state.failing_since = now
            longest = max(longest, now - state.last_progress)
        return longest

    def stalled_seconds(self, topic: str, partition: int) -> float:
        state = self._partitions.get((topic, partition))
        if state is None or (state.lag == 0 and state.failing_since is None):
            return 0.0
        return self._clock() - state.last_progress

    def collect(self) -> Iterator[Metric]:
        stalled = GaugeMetricFamily(
            "shopflow_partition_stalled_seconds",
            "Seconds since the partition last advanced, while records wait on it or its "
            "batch keeps failing (0 when it is keeping up).",
            labels=["topic", "partition"],
        )
        failing = GaugeMetricFamily(
            "shopflow_partition_failing",
            "1 while the partition's current batch is failing and being redelivered.",
            labels=["topic", "partition"],
        )
        for (topic, partition), state in sorted(self._partitions.items()):
            labels = [topic, str(partition)]
            stalled.add_metric(labels, self.stalled_seconds(topic, partition))
            failing.add_metric(labels, 0 if state.failing_since is None else 1)
        yield stalled
        yield failing


PROGRESS = PartitionProgress()
REGISTRY.register(PROGRESS)
