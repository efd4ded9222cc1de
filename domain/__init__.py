"""The shop's rules, in plain Python: no I/O, no framework.

`lint-imports` holds it to that (pyproject.toml, `tool.importlinter`): no database,
Kafka, Redis or HTTP library, no asyncio, socket or subprocess.
"""
