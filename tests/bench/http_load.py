"""The HTTP read side's load client: wrk, driven from the benchmark.

The 32 httpx clients in Python that measured the read side before spent 535-750 µs of
client CPU per request on the same two cores as the server, and saturated before it did.
wrk (C, an event loop on one thread) keeps 32 keep-alive connections busy for a few µs
of CPU a request, so the figures are the server's. The server is `shopflow serve
--no-consume`, which `tests.bench.http_queries` launches, seeds and checks; this module
only loads it and reads what it cost.

For each endpoint (`Target`): a Lua script holds the requests to pick from (a path, and
the bearer token of that path's user when the endpoint asks for one), and each request
is one of them at random. wrk runs once unrecorded (`WARM_UP_S`: connections opened,
tokens verified once and cached, statements prepared), then for the measured duration
with `--latency`; requests/s, p50, p99 and max are read from its printed report. The
server's CPU per request is the `utime + stime` of `/proc/<pid>/stat` over the measured
run divided by its requests; the client's, wrk's own rusage (it is this process's only
child reaped meanwhile) divided likewise. Any answer not 2xx/3xx, or any socket error,
fails the run.

wrk is Debian's package `wrk` (4.1.0); `ensure_wrk` installs it when it is missing, as
`scripts/infra/common.sh`'s `apt_install` installs the servers' packages.
"""

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

THREADS = 1  # one event loop keeps up with a Python server, and takes least of 2 cores
WARM_UP_S = 1  # wrk takes whole seconds only
REQUEST_TIMEOUT = "10s"


@dataclass(frozen=True)
class Target:
    """One endpoint's load: `endpoint` names it in the results (a path with `{id}`s),
    `requests` are what wrk picks from: (path, the bearer token, or None for none)."""

    endpoint: str
    requests: Sequence[tuple[str, str | None]]

    @property
    def with_token(self) -> bool:
        return any(token for _, token in self.requests)


@dataclass(frozen=True)
class EndpointLoad:
    endpoint: str
    with_token: bool
    connections: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    serve_cpu_us_per_request: float  # utime + stime of `shopflow serve`
    client_cpu_us_per_request: float  # wrk's own
    machine_busy_cores: float = 0.0  # every process's, the database's too

    def line(self) -> str:
        return (
            f"GET {self.endpoint}{' (with the token)' if self.with_token else ''}, "
            f"{self.connections} connections: {self.requests_per_second:,.0f} requests/s, "
            f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms; "
            f"serve {self.serve_cpu_us_per_request:,.0f} µs CPU a request, "
            f"wrk {self.client_cpu_us_per_request:,.0f} µs; the machine "
            f"{self.machine_busy_cores:.2f} cores busy"
        )


@dataclass(frozen=True)
class WrkReport:
    """What `wrk --latency` printed, times in milliseconds."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    not_2xx_3xx: int
    socket_errors: int


def ensure_wrk() -> str:
    """wrk's path, installed first from Debian's packages when it is missing (as root;
    `apt-get update` first, as `apt_install` does)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is missing: install Debian's package `wrk` as root, run again")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    print("installing wrk (apt-get install -y wrk)", flush=True)
    for argv in ([*apt, "update"], [*apt, "install", "-y", "--no-install-recommends", "wrk"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("installed Debian's package wrk, but `wrk` is not on PATH")
    return found


def lua_script(target: Target) -> str:
    """The script: each thread formats every request once, then sends one at random."""
    for path, token in target.requests:
        if not (path + (token or "")).isascii():
            raise ValueError(f"not ASCII: {path}")
    # JSON strings of ASCII text are Lua string literals too.
    rows = ",\n".join(
        f"  {{{json.dumps(path)}, {json.dumps(token) if token else 'false'}}}"
        for path, token in target.requests
    )
    return f"""-- written by tests.bench.http_load for {target.endpoint}
local targets = {{
{rows}
}}
local prepared = {{}}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_seed", counter)
end

function init(args)
  math.randomseed(thread_seed or 1)
  for i, t in ipairs(targets) do
    local headers = {{}}
    if t[2] then
      headers["Authorization"] = "Bearer " .. t[2]
    end
    prepared[i] = wrk.format("GET", t[1], headers)
  end
end

function request()
  return prepared[math.random(#prepared)]
end
"""


_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _ms(match: re.Match[str] | None, what: str, output: str) -> float:
    if match is None:
        raise ValueError(f"no {what} in wrk's output:\n{output}")
    return float(match.group(1)) * _MS[match.group(2)]


def parse_report(output: str) -> WrkReport:
    """wrk 4.1's report with `--latency` (its `Latency Distribution`)."""
    done = re.search(rf"^\s*(\d+) requests in {_TIME}", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if done is None or rate is None:
        raise ValueError(f"no request count or rate in wrk's output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    statuses = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkReport(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _MS[done.group(3)] / 1000,
        requests_per_second=float(rate.group(1)),
        p50_ms=_ms(re.search(rf"^\s*50(?:\.0+)?%\s+{_TIME}", output, re.M), "p50", output),
        p99_ms=_ms(re.search(rf"^\s*99(?:\.0+)?%\s+{_TIME}", output, re.M), "p99", output),
        # `Latency  avg  stdev  max  +/- stdev`: the third time is the max.
        max_ms=_ms(re.search(rf"^\s*Latency\s+\S+\s+\S+\s+{_TIME}", output, re.M), "max", output),
        not_2xx_3xx=int(statuses.group(1)) if statuses else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot, from /proc/stat's `cpu` line
    (idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` (every thread of it), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command's name, which is in parentheses and may hold anything:
    # state is field 3, so utime (14) and stime (15) are the 12th and 13th after it.
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


async def _wrk(
    wrk: str,
    script: Path,
    base_url: str,
    connections: int,
    seconds: int,
    script_args: Sequence[str] = (),
) -> str:
    argv = [
        wrk,
        *("--threads", str(THREADS), "--connections", str(connections)),
        *("--duration", f"{seconds}s", "--timeout", REQUEST_TIMEOUT, "--latency"),
        *("--script", str(script), base_url),
    ]
    if script_args:
        argv += ["--", *script_args]  # the script's init(args)
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk exited {process.returncode}: {err.decode()}{out.decode()}")
    return out.decode()


@dataclass(frozen=True)
class Loaded:
    """One measured wrk run: its report, its whole output and the warm-up's (with what a
    script's `done()` printed), and the CPU the server and wrk spent on it, in µs a
    request."""

    output: str
    warm_up_output: str
    report: WrkReport
    serve_cpu_us_per_request: float
    client_cpu_us_per_request: float
    machine_busy_cores: float  # of all the machine's cores, over the measured run


async def load(
    wrk: str,
    script_text: str,
    base_url: str,
    server_pids: int | Sequence[int],
    connections: int,
    seconds: int,
    script_args: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> Loaded:
    """`script_text` run by wrk unrecorded for WARM_UP_S, then for `seconds`, measured
    (`script_args`: the script's arguments in each of the two runs); the server's CPU is
    the sum of its processes' (`server_pids`). Checks no answer."""
    if seconds < 1 or connections < THREADS:
        raise ValueError(f"{seconds} s, {connections} connections")
    tick_us = 1_000_000 / os.sysconf("SC_CLK_TCK")
    warm_args, measured_args = script_args
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        script = Path(folder) / "requests.lua"
        script.write_text(script_text)
        warm = await _wrk(wrk, script, base_url, connections, WARM_UP_S, warm_args)
        pids = [server_pids] if isinstance(server_pids, int) else list(server_pids)
        server_before = sum(map(cpu_ticks, pids))
        machine_before = machine_ticks()
        client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = await _wrk(wrk, script, base_url, connections, seconds, measured_args)
        client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_after = sum(map(cpu_ticks, pids))
        machine_after = machine_ticks()
    report = parse_report(output)
    requests = max(report.requests, 1)
    client_s = (client_after.ru_utime + client_after.ru_stime) - (
        client_before.ru_utime + client_before.ru_stime
    )
    return Loaded(
        output,
        warm,
        report,
        (server_after - server_before) * tick_us / requests,
        client_s * 1_000_000 / requests,
        _busy_cores(machine_before, machine_after),
    )


def _busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * busy / max(total, 1)


async def measure(
    wrk: str,
    target: Target,
    base_url: str,
    server_pids: int | Sequence[int],
    connections: int,
    seconds: int,
) -> EndpointLoad:
    """`target` loaded for `seconds` (whole, after the warm-up) by `connections`
    keep-alive connections; what the server's processes (`server_pids`) spent on it."""
    loaded = await load(wrk, lua_script(target), base_url, server_pids, connections, seconds)
    report, output = loaded.report, loaded.output
    if report.not_2xx_3xx or report.socket_errors:
        raise AssertionError(f"{target.endpoint}: errors under load\n{output}")
    if not report.requests:
        raise AssertionError(f"{target.endpoint}: no request answered\n{output}")
    return EndpointLoad(
        endpoint=target.endpoint,
        with_token=target.with_token,
        connections=connections,
        requests=report.requests,
        seconds=report.seconds,
        requests_per_second=report.requests_per_second,
        p50_ms=report.p50_ms,
        p99_ms=report.p99_ms,
        max_ms=report.max_ms,
        serve_cpu_us_per_request=loaded.serve_cpu_us_per_request,
        client_cpu_us_per_request=loaded.client_cpu_us_per_request,
        machine_busy_cores=loaded.machine_busy_cores,
    )


def wrk_version(wrk: str) -> str:
    """`wrk 4.1.0 [epoll] ...`'s first words (wrk -v prints it and exits 1)."""
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"
