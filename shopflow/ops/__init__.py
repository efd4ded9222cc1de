"""Operator commands of the `shopflow` CLI: dead letters, topics, consumer lag, settings.
Each module gathers what it shows (async, from the servers) and renders it; `ops.cli`
holds the Typer commands."""
