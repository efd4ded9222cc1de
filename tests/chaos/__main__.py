"""`python -m tests.chaos`: every fault against the chaos servers, with a table.

.venv/bin/python -m tests.chaos                  # the long version (make chaos)
.venv/bin/python -m tests.chaos --fast           # what make test runs, one fault each
.venv/bin/python -m tests.chaos --only worker-kill,postgres-restart --seed 7
"""

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.driver import Report, write_logs
from tests.chaos.servers import REPO, ChaosServers
from tests.chaos.suite import FAULTS, Scale, run_fault, table


async def run_all(names: list[str], scale: Scale, seed: int | None) -> list[Report]:
    """Each fault in turn; the servers they ran on are stopped at the end."""
    reports = []
    instances: dict[Path, ChaosServers] = {}
    try:
        for name in names:
            plan_servers = FAULTS[name].servers()
            servers = instances.setdefault(plan_servers.state_dir, plan_servers)
            report, _ = await run_fault(name, scale, seed=seed, servers=servers)
            print(report.line(), flush=True)
            for line in [*report.problems[:20], *report.notes]:
                print(f"    {line}", flush=True)
            write_logs(report, servers, REPO / ".infra" / "chaos-logs" / f"{name}.txt")
            reports.append(report)
    finally:
        for servers in instances.values():
            await servers.down()
    return reports


def main(args: argparse.Namespace) -> int:
    # The driver's own Kafka clients log every broker that is away (the faults see to
    # that) at ERROR; what the run found is in its report, and the workers' logs are
    # under .infra/chaos-logs/.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    scale = Scale.FAST if args.fast else Scale.LONG
    names = args.only.split(",") if args.only else list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        print(f"unknown faults: {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        return 2
    reports = asyncio.run(run_all(names, scale, args.seed))
    print()
    print(table(reports))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    path = out / f"chaos-{scale.value}-{stamp}.json"
    path.write_text(json.dumps([asdict(r) for r in reports], indent=2))
    print(f"\nresults: {path}")
    return 0 if all(not r.problems for r in reports) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fast", action="store_true", help="the short runs of make test")
    parser.add_argument("--only", default="", help="comma-separated fault names")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    sys.exit(main(parser.parse_args()))
