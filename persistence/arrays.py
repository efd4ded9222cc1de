"""A batch of rows bound as one array per column.

`rows_of(name, col=type, ...)` is `SELECT unnest(:name_col) AS col, ...`: whatever the
batch size, one statement with one parameter per column, so PostgreSQL and asyncpg
reuse one prepared statement and SQLAlchemy one compiled form. An executemany of N
parameter sets (or an `IN` list of N binds) costs N times the parameter handling, and
a new prepared statement for every new N.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Subquery, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def rows_of(name: str, /, **columns: TypeEngine[Any]) -> Subquery:
    return select(
        *(
            func.unnest(bindparam(f"{name}_{column}", type_=ARRAY(type_))).label(column)
            for column, type_ in columns.items()
        )
    ).subquery(name)


def bound(name: str, /, **columns: Sequence[Any]) -> dict[str, list[Any]]:
    """The parameters of `rows_of(name, ...)`: one list per column."""
    return {f"{name}_{column}": list(values) for column, values in columns.items()}


def any_of(column: ColumnElement[Any], name: str, type_: TypeEngine[Any]) -> ColumnElement[bool]:
    """`column = ANY(:name)`: membership in one array parameter."""
    return column == any_(bindparam(name, type_=ARRAY(type_)))
