"""`shopflow token`: a bearer token signed with the local servers' key, for trying the
HTTP side by hand and for tests:

    curl -H "Authorization: Bearer $(shopflow token --user 2)" localhost:8000/users/2/points
"""

from typing import Annotated

import typer

from shopflow.contracts.limits import MAX_ENTITY_ID
from shopflow.queries.auth import SCOPES
from shopflow.settings import Settings
from shopflow.tokens import NoSigningKey, local_signing_key, sign_token

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)


@app.command()
def token(
    user: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_ENTITY_ID, help="The user it speaks for (its `sub`)."),
    ] = None,
    scope: Annotated[
        str,
        typer.Option(help=f"Space-separated scopes, of: {', '.join(sorted(SCOPES))}."),
    ] = "",
    ttl: Annotated[int, typer.Option(min=1, help="Seconds it stays valid.")] = 3600,
    subject: Annotated[
        str | None,
        typer.Option(
            help="A service's name as its `sub` (with --scope, not --user): whose "
            "Idempotency-Keys and rate limit its writes over HTTP are. Default: "
            "shopflow-token."
        ),
    ] = None,
) -> None:
    """Print a token (only the token) for --user, --scope or both, signed with the key of
    the local servers (SHOPFLOW_INFRA_DIR/token-signing-key.pem) for SHOPFLOW_AUTH_ISSUER
    and SHOPFLOW_AUTH_AUDIENCE."""
    scopes = scope.split()
    if user is None and not scopes:
        raise typer.BadParameter("give --user, --scope or both", param_hint="--user/--scope")
    if subject is not None and user is not None:
        raise typer.BadParameter("a user's token has the user as its sub", param_hint="--subject")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise typer.BadParameter(
            f"unknown {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}",
            param_hint="--scope",
        )
    settings = Settings()
    try:
        key = local_signing_key(settings)
    except NoSigningKey as error:
        typer.echo(f"shopflow token: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        sign_token(
            key,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            user_id=user,
            scopes=scopes,
            ttl_s=ttl,
            subject=subject,
        )
    )
