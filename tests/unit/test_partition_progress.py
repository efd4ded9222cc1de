"""A partition that stands still while records wait, or whose batch keeps failing, shows
as stalled, for as long as it does; one that keeps up shows 0 (no I/O)."""

from shopflow.consumers.progress import PartitionProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sample(progress: PartitionProgress, name: str, partition: int) -> float:
    for family in progress.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels["partition"] == str(partition):
                return float(sample.value)
    raise AssertionError(name)


def test_a_failing_partition_is_stalled_since_it_last_advanced_and_recovers() -> None:
    clock = Clock()
    progress = PartitionProgress(clock)
    progress.advanced("t", 0, lag=0)
    progress.advanced("t", 1, lag=0)

    clock.now += 5
    assert progress.failed("t", [0]) == 5
    clock.now += 7

    assert _sample(progress, "shopflow_partition_stalled_seconds", 0) == 12
    assert _sample(progress, "shopflow_partition_failing", 0) == 1
    assert _sample(progress, "shopflow_partition_stalled_seconds", 1) == 0

    progress.advanced("t", 0, lag=0)
    assert _sample(progress, "shopflow_partition_stalled_seconds", 0) == 0
    assert _sample(progress, "shopflow_partition_failing", 0) == 0


def test_a_partition_with_records_waiting_that_does_not_advance_is_stalled() -> None:
    clock = Clock()
    progress = PartitionProgress(clock)
    progress.advanced("t", 3, lag=40)

    clock.now += 9

    assert _sample(progress, "shopflow_partition_stalled_seconds", 3) == 9
