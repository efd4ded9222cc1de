"""`make bench`: every benchmark in one run, printed as a table and written as JSON.

    .venv/bin/python -m tests.bench.suite                       # the full run, ~8 min
    .venv/bin/python -m tests.bench.suite --smoke --out /tmp/b  # a few hundred commands

In one run, so that the ratios hold on a noisy machine:
- the drains of every command kind (`cancels`: CancelOrder of orders seeded placed) and
  of the mix, with 1 and with 2 worker processes, each beside the bare aiokafka consume
  + produce + commit loop over the same records (`tests.bench.drain`,
  `tests.bench.ceilings`), and the workers' RSS; then, settled
  (the worker started and joined before the commands come), charges, orders and the
  mix with 1 and with 3 consumers per topic in one worker; and charges and orders with
  the sales aggregator in a worker of its own (`shopflow worker --consumers sales`);
- the applier alone with PostgreSQL, and the same SQL sent by bare asyncpg
  (`tests.bench.sql_ceiling`);
- open-loop latency at 500/s and at half the measured ChargePoints drain rate, beside a
  bare aiokafka echo at the same rates (`tests.bench.latency`, HdrHistogram);
- the aggregator's rate, then the HTTP read side under wrk (32 keep-alive connections;
  requests/s, p50 and p99, and `shopflow serve`'s CPU per request from /proc): GET
  /products/top, /users/{id}/points (with the user's token), /products/{id} (without),
  and a user's history (with the token): /users/{id}/orders and
  /users/{id}/points/transactions, a random full page of 20 of 50 users with 60 orders
  each, and /users/{id}/orders/{order_id} (`tests.bench.http_queries`, whose answers are
  checked first, and `tests.bench.http_load`, which installs wrk when missing); the
  product and the balance offered 1,000 requests/s open loop (`tests.bench.open_loop_http`);
  two serve processes on one port against one (`tests.bench.serve_processes`); and the
  baselines, bare apps doing the same reads (`tests.bench.baseline_apps`), the product's
  also open loop;
- commands over HTTP through one `shopflow serve --no-consume` to one worker
  (`tests.bench.http_writes`): ChargePoints and two-line PlaceOrder requests/s under wrk
  (64 connections, a fresh `Idempotency-Key` a request, every answer 200/201 and the
  database agreeing), and open-loop ChargePoints latency at 100/s and 200/s over HTTP
  (a raw-socket client) beside the same over Kafka to the same worker, with the ratio
  HTTP / Kafka of p50 and p99 (the goal: within 1.5x);
- then `shopflow check`'s invariants over the whole database, which must hold.

The JSON goes to `<out>/bench-<UTC time>.json` (`benchmarks/results` by default), with
the machine and the commit it ran on. The smoke variant (`--smoke`, in `make test`)
runs every part with a few hundred commands (and wrk for 1 s an endpoint, 1 s open loop,
10 history users; the HTTP writes 1 s each under wrk's 8 connections and 2 s at 100/s), so that
none of them can rot; its figures mean nothing.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopflow.persistence.database import create_engine
from shopflow.persistence.reconciliation import describe, find_violations
from shopflow.settings import Settings
from tests.bench import drain, http_queries, http_writes, latency, sql_ceiling

FULL_DRAINS = {
    "charges": 20_000,
    "orders": 10_000,
    "cancels": 10_000,  # CancelOrder of orders seeded placed
    "register": 10_000,
    "upsert": 10_000,
    "add-item": 10_000,
    "remove-item": 10_000,
    "mix": 20_000,
}
TARGETS = {  # the issue's, commands per second with one worker
    "charges": 10_000,
    "orders": 5_000,
    "cancels": 5_000,  # as PlaceOrder's
    "register": 3_000,
    "upsert": 3_000,
    "add-item": 3_000,
    "remove-item": 3_000,
    "mix": 7_000,
}


# The reads the issue gave a p99 target (5 ms); the history's have none.
P99_TARGETED = frozenset({"/products/top", "/users/{id}/points", "/products/{id}"})


def _machine() -> dict[str, Any]:
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
        "commit": commit or None,
    }


async def _books_hold() -> str:
    """`shopflow check` over the whole database as the run leaves it (every part seeds
    with SQL or sends commands, and must keep the books whole): raises on a violation."""
    engine = create_engine(Settings().database_url, pool_size=1)
    try:
        violations = await find_violations(engine)
    finally:
        await engine.dispose()
    if violations:
        raise AssertionError(describe(violations))
    return "all invariants hold"


async def run(smoke: bool) -> dict[str, Any]:
    sizes = {kind: 300 for kind in FULL_DRAINS} if smoke else FULL_DRAINS
    users = 200 if smoke else 2_000
    started = time.perf_counter()
    drains = []
    for workers in (1, 2):
        for kind, count in sizes.items():
            if smoke and workers == 2 and kind != "charges":
                continue
            drains.append(await drain.run(kind, count, users, workers=workers))
    # Steady state in one worker: started first, then the commands; with 1 and with 3
    # consumers per topic (whose batches overlap).
    for consumers in (1, 3):
        for kind in ("charges", "orders", "mix"):
            if smoke and (kind != "charges" or consumers == 1):
                continue
            drains.append(
                await drain.run(
                    kind,
                    sizes[kind] if smoke else 20_000,
                    users,
                    settle=True,
                    consumers_per_topic=consumers,
                )
            )
    # The sales aggregator in a worker of its own (`--consumers sales`), the commands in
    # another: what an order drain gains from not sharing its worker with it.
    for kind in ("charges", "orders"):
        if smoke and kind != "orders":
            continue
        drains.append(await drain.run(kind, sizes[kind], users, sales_apart=True))
    sql = [
        await sql_ceiling.run(kind, 1_000 if smoke else 10_000, users)
        for kind in ("charges", "orders")
    ]
    charges = next(d for d in drains if d.kind == "charges" and d.workers == 1)
    rates = [100] if smoke else [500, int(charges.per_second / 2)]
    latencies = await latency.run(rates, 2.0 if smoke else 15.0)
    http = await (
        http_queries.run(events=300, seconds=1, history_users=10, open_loop_seconds=1)
        if smoke
        else http_queries.run()
    )
    writes = await (
        # 8 connections, not 64: on a starved machine 64 requests at once can all take
        # longer than wrk's one second, and a run with no answer proves nothing.
        http_writes.run(seconds=1, rates=(100,), latency_seconds=2.0, connections=8)
        if smoke
        else http_writes.run()
    )
    books = await _books_hold()
    print(f"shopflow check: {books}", flush=True)
    return {
        "smoke": smoke,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "drains": [asdict(d) | {"ratio": d.ratio} for d in drains],
        "sql": [asdict(s) for s in sql],
        "latency": [{"what": what} | asdict(measured) for what, measured in latencies],
        "http": asdict(http),
        "http_writes": asdict(writes)
        | {
            "ratios": [
                {"rate": p.rate, "p50": p.p50_ratio, "p99": p.p99_ratio} for p in writes.latencies
            ]
        },
        "check": books,
        "targets_per_second": TARGETS,
    }


def table(result: dict[str, Any]) -> str:
    """The run as a Markdown table, the README's performance section."""
    rows = ["| what | shopflow | same run, for comparison |", "| --- | --- | --- |"]
    for d in result["drains"]:
        ceiling = (
            f"bare aiokafka loop {d['ceiling_per_second']:,.0f}/s; shopflow = "
            f"{d['ratio']:.2f} of it"
            if d["ceiling_per_second"]
            else ""
        )
        target = TARGETS[d["kind"]] if d["workers"] == 1 else None
        aim = f" (target {target:,}/s)" if target else ""
        rss = f", RSS {d['worker_rss_mb']:.0f} MB" if d["worker_rss_mb"] else ""
        how = f"{d['workers']} worker(s)"
        if d["consumers_per_topic"] > 1:
            how += f" x {d['consumers_per_topic']} consumers per topic"
        if d.get("sales_apart"):
            how += ", the aggregator in a worker of its own"
        if d["settled"]:
            how += ", settled"
        rows.append(
            f"| drain `{d['kind']}`, {d['commands']:,} commands, {how} "
            f"| {d['per_second']:,.0f}/s{aim}{rss} | {ceiling} |"
        )
    for s in result["sql"]:
        rows.append(
            f"| `{s['kind']}` applier alone with PostgreSQL, no Kafka | "
            f"{s['applier_per_second']:,.0f}/s | its SQL ({s['statements_per_batch']:.0f} "
            f"statements a batch of 500) by bare asyncpg: {s['bare_sql_per_second']:,.0f}/s |"
        )
    echo = {m["rate"]: m for m in result["latency"] if m["what"].startswith("bare")}
    for m in result["latency"]:
        if m["what"].startswith("bare"):
            continue
        e = echo.get(m["rate"])
        beside = f"bare echo p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms" if e else ""
        rows.append(
            f"| open-loop `ChargePoints` at {m['rate']:,}/s (p50 / p99 / max) | "
            f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} / {m['max_ms']:.1f} ms | {beside} |"
        )
    h = result["http"]
    rows.append(
        f"| aggregator, `OrderPlaced` applied | {h['aggregator_events_per_second']:,.0f}/s "
        "(target 20,000/s) | |"
    )
    baselines = {b["endpoint"]: b for b in h.get("baselines", [])}
    for e in h["endpoints"]:
        token = " (the user's token)" if e["with_token"] else ""
        aim = " (target p99 5 ms)" if e["endpoint"] in P99_TARGETED else ""
        beside = f"wrk's CPU {e['client_cpu_us_per_request']:,.0f} µs a request"
        base = baselines.get(http_queries.BASELINE_OF.get(e["endpoint"], ""))
        if base is not None:
            beside = (
                f"{base['endpoint'].split()[0]} {base['requests_per_second']:,.0f}/s, "
                f"p99 {base['p99_ms']:.2f} ms, {base['serve_cpu_us_per_request']:,.0f} µs; "
                f"shopflow = {e['requests_per_second'] / base['requests_per_second']:.2f} of "
                f"it, {e['serve_cpu_us_per_request'] / base['serve_cpu_us_per_request']:.2f}x "
                f"its CPU; {beside}"
            )
        rows.append(
            f"| `GET {e['endpoint']}`{token}, wrk, {e['connections']} connections "
            f"(requests/s, p50 / p99, serve's CPU a request) | "
            f"{e['requests_per_second']:,.0f}/s, {e['p50_ms']:.2f} / {e['p99_ms']:.2f} ms"
            f"{aim}, {e['serve_cpu_us_per_request']:,.0f} µs | {beside} |"
        )
    rows += _open_loop_rows(h)
    rows += _write_rows(result["http_writes"])
    m = result["machine"]
    rows.append("")
    rows.append(
        f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, commit "
        f"{m['commit']}, {result['at']}; {result['seconds']:.0f} s in all."
    )
    return "\n".join(rows)


def _open_loop_rows(h: dict[str, Any]) -> list[str]:
    """The hot reads open loop beside B-db's, and two serve processes beside one."""
    rows = []
    loops = {o["endpoint"]: o for o in h.get("open_loops", [])}
    base = loops.get(http_queries.BASELINE_DB)
    for endpoint, o in loops.items():
        if endpoint == http_queries.BASELINE_DB:
            continue
        lat = o["latency"]
        beside = f"client's CPU {o['client_cpu_us_per_request']:,.0f} µs a request"
        if base is not None:
            b = base["latency"]
            beside = (
                f"B-db {b['p50_ms']:.1f} / {b['p99_ms']:.1f} / {b['max_ms']:.1f} ms; p99 "
                f"{lat['p99_ms'] / b['p99_ms']:.2f}x B-db's (target 1.5x); {beside}"
            )
        rows.append(
            f"| open-loop `GET {endpoint}` at {lat['rate']:,}/s (p50 / p99 / max) | "
            f"{lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} / {lat['max_ms']:.1f} ms "
            f"(target p99 5 ms) | {beside} |"
        )
    s = h.get("scale_out")
    if s is not None:
        load = s["load"]
        spread = " / ".join(f"{n:,}" for n in s["requests_per_process"])
        rows.append(
            f"| `GET {load['endpoint']}`, {s['processes']} serve processes on one port "
            f"(pools of {s['pool_size_per_process']}), wrk, {load['connections']} connections "
            f"| {load['requests_per_second']:,.0f}/s = "
            f"{load['requests_per_second'] / s['single_requests_per_second']:.2f}x one "
            f"process (target 1.6x), {load['serve_cpu_us_per_request']:,.0f} µs a request "
            f"| requests per process {spread}; the machine "
            f"{load['machine_busy_cores']:.2f} cores busy |"
        )
    return rows


def _write_rows(w: dict[str, Any]) -> list[str]:
    where = f"1 `serve --no-consume`, {w['workers']} worker(s)"
    rows = []
    for load in w["loads"]:
        answered = ", ".join(f"{n:,} of status {status}" for status, n in load["statuses"].items())
        rows.append(
            f"| `{load['endpoint']}` over HTTP, wrk, {load['connections']} connections, "
            f"{where} (requests/s, p50 / p99, serve's CPU a request) | "
            f"{load['requests_per_second']:,.0f}/s, {load['p50_ms']:.1f} / {load['p99_ms']:.1f} "
            f"ms, {load['serve_cpu_us_per_request']:,.0f} µs | answered {answered}, "
            f"{load['applied']:,} applied (warm-up included); wrk's CPU "
            f"{load['client_cpu_us_per_request']:,.0f} µs a request |"
        )
    for pair, ratio in zip(w["latencies"], w["ratios"], strict=True):
        http, kafka = pair["http"], pair["kafka"]
        rows.append(
            f"| open-loop `ChargePoints` over HTTP at {pair['rate']:,}/s, {where} "
            f"(p50 / p99 / max) | {http['p50_ms']:.1f} / {http['p99_ms']:.1f} / "
            f"{http['max_ms']:.1f} ms; HTTP / Kafka: p50 {ratio['p50']:.2f}x, p99 "
            f"{ratio['p99']:.2f}x (goal 1.5x) | over Kafka, same worker: "
            f"{kafka['p50_ms']:.1f} / {kafka['p99_ms']:.1f} / {kafka['max_ms']:.1f} ms; client "
            f"CPU a request {pair['http_client_cpu_us_per_request']:,.0f} µs (HTTP), "
            f"{pair['kafka_client_cpu_us_per_request']:,.0f} µs (Kafka); serve "
            f"{pair['serve_cpu_us_per_request']:,.0f} µs |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a few hundred commands each")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args.smoke))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = result["at"].replace(":", "").replace("+0000", "Z")
    path = out / f"bench-{'smoke-' if args.smoke else ''}{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
