"""A free TCP port on loopback, for a server a test or a run starts of its own (a worker's
HTTP side, `shopflow serve`, a redis-server)."""

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
