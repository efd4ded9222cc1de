"""`make soak`: a steady load on one worker for minutes, watching its memory.

    .venv/bin/python -m tests.bench.soak                        # 1,000/s for 300 s
    .venv/bin/python -m tests.bench.soak --rate 2000 --seconds 600

Charges are sent at a fixed rate (open loop, as `shop-payments`, their upstream writer) to
one `shopflow worker` on topics of its own (created with the contract's ACLs as the Kafka
admin; the results read as `shop-reader`), while the worker's resident memory (VmRSS)
is sampled every 5 s. It reports the RSS after the first minute (warm: caches, pools and
buffers filled), at the end, and the least-squares slope over the samples after the
first minute; every command must be answered. "No growth beyond noise" means a slope
near 0 MB/min and an end within a few MB of the first-minute figure.
"""

import argparse
import asyncio
import secrets
import sys
import time
from dataclasses import asdict, dataclass

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.principals import PAYMENTS, READER
from shopflow.contracts.topics import POINTS_CHARGE, POINTS_EVENTS, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from tests.bench.drain import _rss_mb, seed
from tests.support.scratch import (
    create_scratch_topics,
    delete_scratch_topics,
    scratch_settings,
    service_env,
)

USERS = 2_000
SAMPLE_SECONDS = 5.0


@dataclass(frozen=True)
class Soak:
    rate: int
    seconds: float
    sent: int
    answered: int
    rss_after_first_minute_mb: float
    rss_at_end_mb: float
    rss_slope_mb_per_minute: float

    def line(self) -> str:
        return (
            f"{self.sent:,} charges at {self.rate}/s over {self.seconds:.0f} s, "
            f"{self.answered:,} answered; worker RSS {self.rss_after_first_minute_mb:.1f} MB "
            f"after the first minute, {self.rss_at_end_mb:.1f} MB at the end "
            f"(slope {self.rss_slope_mb_per_minute:+.2f} MB/min)"
        )


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares MB per minute of (seconds, MB) samples."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    return 60 * sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread


async def run(rate: int, seconds: float) -> Soak:
    settings = scratch_settings("soak")
    run_id = settings.consumer_group
    topics = Topics(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    first_id = secrets.randbelow(2**60) + 1
    user_ids = [first_id + i for i in range(USERS)]
    await seed(engine, user_ids, 0, [])
    await engine.dispose()
    await create_scratch_topics(settings)
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "shopflow", "worker", "--log-level", "warning"),
        env=service_env(settings),
    )
    producer = kafka_connection(settings, PAYMENTS).producer(linger_ms=2)
    consumer = kafka_connection(settings, READER).consumer(
        topics.name(POINTS_EVENTS),
        group_id=f"{READER}-soak-{run_id}",  # the reader's group prefix
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    answered = 0

    async def read() -> None:
        nonlocal answered
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            answered += sum(len(records) for records in batches.values())

    samples: list[tuple[float, float]] = []
    reader = asyncio.create_task(read())
    sent = 0
    try:
        start = time.perf_counter()
        next_sample = start + SAMPLE_SECONDS
        while (now := time.perf_counter()) - start < seconds:
            due = start + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            user_id = user_ids[sent % USERS]
            command = ChargePoints(command_id=f"soak-{run_id}-{sent}", user_id=user_id, amount=1)
            await producer.send(
                topics.name(POINTS_CHARGE),
                command.model_dump_json().encode(),
                key=str(user_id).encode(),
            )
            sent += 1
            if now >= next_sample:
                rss = _rss_mb(worker.pid)
                if rss is not None:
                    samples.append((now - start, rss))
                next_sample += SAMPLE_SECONDS
        await producer.flush()
        deadline = time.perf_counter() + 60
        while answered < sent and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        end_rss = _rss_mb(worker.pid) or 0.0
    finally:
        reader.cancel()
        worker.terminate()
        await worker.wait()
        await consumer.stop()
        await producer.stop()
        await delete_scratch_topics(settings)
    warm = [(t, m) for t, m in samples if t >= 60] or samples
    result = Soak(
        rate=rate,
        seconds=seconds,
        sent=sent,
        answered=answered,
        rss_after_first_minute_mb=warm[0][1] if warm else end_rss,  # a run too short to sample
        rss_at_end_mb=end_rss,
        rss_slope_mb_per_minute=_slope(warm),
    )
    print(result.line())
    print({k: v for k, v in asdict(result).items()})
    assert answered >= sent, f"{sent - answered} charges unanswered"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds))


if __name__ == "__main__":
    main()
