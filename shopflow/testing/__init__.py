"""Testing against shopflow: the servers, a shopflow of one's own per test session, and
the pytest fixtures over them (`shopflow.testing.plugin`, which pytest loads by itself
wherever shopflow is installed with its `testing` extra).

- `servers`: where Kafka, PostgreSQL and Redis are (the secured SHOPFLOW_* ones).
- `session`: a fresh database and topic prefix (`isolated_settings`), and shopflow
  running on them as it really runs (`running_service`).
- `fixtures`: `shopflow_endpoints`, `shopflow_settings`, `shopflow_service`,
  `shopflow_client`, `shopflow_http`, `shopflow_token`.

This repository's own integration tests use the same fixtures (tests/integration/conftest.py).
"""
