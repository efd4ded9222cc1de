"""Consumer lag for operators: `shopflow.kafka_lag.consumer_lag` per partition, with
each group's totals."""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from rich.table import Table
from rich.text import Text

from shopflow.kafka_lag import PartitionLag


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    partitions: list[PartitionLag]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def end(self) -> int:
        return sum(p.end for p in self.partitions)


def by_group(lags: Sequence[PartitionLag]) -> list[GroupLag]:
    """`consumer_lag`'s rows (ordered by group) gathered per group."""
    groups = []
    for group, rows in groupby(lags, key=lambda lag: lag.group):
        partitions = list(rows)
        groups.append(GroupLag(group, partitions[0].topic, partitions))
    return groups


def as_json(groups: Sequence[GroupLag]) -> list[dict[str, Any]]:
    return [
        {
            "group": group.group,
            "topic": group.topic,
            "lag": group.lag,
            "end_offsets": group.end,
            "partitions": [
                {"partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
                for p in group.partitions
            ],
        }
        for group in groups
    ]


def _committed(offset: int | None) -> str:
    return "none" if offset is None else str(offset)


def table(groups: Sequence[GroupLag]) -> Table:
    shown = Table()
    shown.add_column("group", no_wrap=True)
    shown.add_column("topic", no_wrap=True)
    shown.add_column("partition", justify="right")
    shown.add_column("committed", justify="right")
    shown.add_column("end", justify="right")
    shown.add_column("lag", justify="right")
    for group in groups:
        for p in group.partitions:
            shown.add_row(
                Text(group.group),
                Text(group.topic),
                str(p.partition),
                _committed(p.committed),
                str(p.end),
                str(p.lag),
            )
        shown.add_row(
            Text(group.group),
            Text("total", style="bold"),
            "",
            "",
            str(group.end),
            Text(str(group.lag), style="bold"),
            end_section=True,
        )
    return shown
