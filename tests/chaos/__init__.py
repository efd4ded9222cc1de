"""The fault-injection suite: a stream of mixed commands, a tenth of those with an HTTP
route sent over HTTP, while one fault at a time strikes (workers SIGKILLed at chosen and
random points, SIGTERM, rebalances, PostgreSQL, the broker and Redis restarted, a leader
of a three-broker cluster killed, the HTTP side SIGKILLed), then every promise of
docs/design.md checked against what came out and what PostgreSQL holds.

    workload.py   the shop and the stream (duplicates, poison, scarce stock, cancels
                  and ships of orders placed in the setup)
    over_http.py  which commands go over HTTP, and the request each is
    model.py      what the database must hold, from the commands' outcomes
    driver.py     one run: workers, serve, setup, stream, fault, quiescence, checks
    http_sender.py  the HTTP client: retries as a client would, keeps the answers
    landings.py   where each command landed on its topic, however it was sent
    serve.py      the run's `shopflow serve --no-consume` (the HTTP side)
    faults.py     the worker, server and serve faults; redis_fault.py, cluster.py
    suite.py      each fault's fast (make test) and long (make chaos) size
    servers.py    the chaos instance of scripts/infra.sh (ports and state of its own)
"""
