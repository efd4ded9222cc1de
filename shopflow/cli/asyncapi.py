"""`shopflow asyncapi`: the AsyncAPI document of the wire contract."""

from typing import Annotated

import typer

from shopflow.asyncapi import asyncapi_json

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)


@app.command()
def asyncapi(
    out: Annotated[str, typer.Option(help="Write to this file instead of stdout.")] = "",
) -> None:
    """Print (or write) the AsyncAPI document of the wire contract."""
    document = asyncapi_json()
    if out:
        with open(out, "w", encoding="utf-8") as file:
            file.write(document)
    else:
        typer.echo(document, nl=False)
