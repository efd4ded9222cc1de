"""The fault-injection suite: a stream of mixed commands sent while one fault at a time
strikes (workers SIGKILLed at chosen and random points, SIGTERM, rebalances, PostgreSQL,
the broker and Redis restarted, a leader of a three-broker cluster killed), then every
promise of docs/design.md checked against what came out and what PostgreSQL holds.

    workload.py   the shop and the stream (duplicates, poison, scarce stock, cancels
                  and ships of orders placed in the setup)
    model.py      what the database must hold, from the commands' outcomes
    driver.py     one run: workers, setup, stream, fault, quiescence, checks
    faults.py     the worker and server faults; redis_fault.py, cluster.py
    suite.py      each fault's fast (make test) and long (make chaos) size
    servers.py    the chaos instance of scripts/infra.sh (ports and state of its own)
"""
