"""The `shopflow` command line: `app`, and `main`, its console entry point.

Its commands live by concern, each module with a Typer of its own merged into `app`:
`processes` (serve, worker, migrate), `senders` (send and the typed senders),
`demo` (demo-data), `maintenance` (rebuild-top, purge-ledger, check), `asyncapi`,
`token` (a bearer token signed with the local key), and the operator commands of
`shopflow.ops` (dead-letters, topics, lag, config).
"""

import typer

from shopflow.cli import asyncapi, demo, maintenance, processes, senders, token
from shopflow.ops.cli import register as register_operator_commands

app = typer.Typer(
    help="shopflow: Kafka commands applied to PostgreSQL exactly once.", no_args_is_help=True
)
for part in (processes.app, senders.app, demo.app, maintenance.app, asyncapi.app, token.app):
    app.add_typer(part)  # without a name: its commands become `shopflow`'s own

# Registered on a Typer of their own, so that they come last in `shopflow --help`.
operators = typer.Typer()
register_operator_commands(operators)  # dead-letters, topics, lag, config
app.add_typer(operators)


def main() -> None:
    app()
