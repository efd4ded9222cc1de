"""What tests import besides the library under test, in one place:

- ids: command and entity ids no other test or run uses (`new_command_id`, `new_entity_id`).
- service: set-ups through a running service's client (registered and funded users, new
  products) and `isolated`, the settings of a service instance of a test's own.
- database: reads (and a direct write) of the session's PostgreSQL past the service.
- workers: `shopflow worker` in a process of its own: started, ready, stopped.
- ports: a free TCP port on loopback.
- waiting: `eventually` (an assertion retried) and `until` (a condition polled).
- seeding: users, products and orders inserted straight into PostgreSQL, books consistent.
- cli: the `shopflow` command line run in a thread from an async test, and `explain`.
- records: a command as the applier gets it, decoded from the record a client would send.
- handling: a batch through its binding, its answers sealed (`handled`, `names`).
- fakes: the in-memory database of `consumers.ports`, rolling back as PostgreSQL would.
- memory_kafka: Kafka's two ends in memory, for the consumer wiring under TestKafkaBroker.
- signing_keys: keys and bearer tokens for the HTTP side's authentication.
- hostile: hypothesis strategies of hostile records (every way a command can be wrong).
- scratch: a run's own settings, topics and ACLs on the servers of `make up`, and the
  environment of a `shopflow` subprocess (benchmarks, chaos runs, integration tests).
- dashboard: the Grafana dashboard's PromQL and the metrics it reads.
"""
