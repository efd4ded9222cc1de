"""The shop's rules, in plain Python: no I/O, no framework.

`grep -rE "sqlalchemy|faststream|redis|aiokafka" domain/` must print nothing.
"""
