"""Where a batch's records sit in their partitions: the one place offsets are summed up,
for the lane's commits and rewinds and for the batch's log line."""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol


class Positioned(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class OffsetSpan:
    """A batch's offsets per partition: its first and its last."""

    ranges: dict[int, tuple[int, int]]

    @classmethod
    def of(cls, records: Iterable[Positioned]) -> "OffsetSpan":
        ranges: dict[int, tuple[int, int]] = {}
        for r in records:
            first, last = ranges.get(r.partition, (r.offset, r.offset))
            ranges[r.partition] = (min(first, r.offset), max(last, r.offset))
        return cls(dict(sorted(ranges.items())))

    @cached_property
    def first(self) -> dict[int, int]:
        """Per partition, where the batch starts: where a rewind goes."""
        return {p: first for p, (first, _) in self.ranges.items()}

    @cached_property
    def next(self) -> dict[int, int]:
        """Per partition, the offset to commit once the batch is done."""
        return {p: last + 1 for p, (_, last) in self.ranges.items()}

    def describe(self, topic: str) -> str:
        """'topic[p]@first-last, ...'"""
        return ", ".join(f"{topic}[{p}]@{a}-{b}" for p, (a, b) in self.ranges.items())
