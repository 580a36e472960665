"""``modelyard keys create|list|revoke``: the model gateway's API keys.

A new key is printed once, on stdout, and never again: only a hash of its secret is stored.
Messages go to stderr, so ``modelyard keys create ... --json | jq -r .key`` captures the key alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cli.output import err, handle_errors, out, print_json
from modelyard.settings import get_settings

if TYPE_CHECKING:
    from serving.gateway.keys import KeyInfo, SqlKeyStore

keys_app = typer.Typer(help="API keys of the model gateway.", no_args_is_help=True)


def _store() -> SqlKeyStore:
    from serving.gateway.keys import SqlKeyStore

    store = SqlKeyStore.from_settings(get_settings())
    store.migrate()  # a no-op when current; makes the first `keys create` work on a new database
    return store


@keys_app.command("create")
@handle_errors
def create_key(
    scope: str | None = typer.Option(
        None, "--scope", help="Models the key may call: MODEL[,MODEL], or '*' for every model."
    ),
    name: str | None = typer.Option(None, "--name", help="What the key is for (default: scope)."),
    admin: bool = typer.Option(False, "--admin", help="May call every model and manage."),
    rate: str | None = typer.Option(
        None, "--rate", help="Limit, e.g. 10/s or 600/m; none if absent."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from serving.gateway.ratelimit import parse_rate

    if scope is None and not admin:
        raise typer.BadParameter(
            "pass --scope MODEL[,MODEL] (or '*'), or --admin", param_hint="--scope"
        )
    scopes = None if scope is None else scope.split(",")
    per_second = None if rate is None else parse_rate(rate)
    with _store() as store:
        api_key, raw = store.create(
            name or ("admin" if admin else str(scope)), scopes, admin=admin, rate=per_second
        )
        info = store.get(api_key.key_id)
    if as_json:
        print_json({"key": raw, **_info_dict(info)})
        return
    typer.echo(raw)
    err.print(
        f"created key {api_key.key_id} ({_scope_text(info)}, {_rate_text(info)}): "
        "store it now, it cannot be shown again",
        highlight=False,
    )


@keys_app.command("list")
@handle_errors
def list_keys(as_json: bool = typer.Option(False, "--json")) -> None:
    """List keys (never their secrets), revoked ones too."""
    with _store() as store:
        keys = store.list()
    if as_json:
        print_json([_info_dict(info) for info in keys])
        return
    if not keys:
        out.print("no API keys yet: run `modelyard keys create --scope MODEL`")
        return
    table = Table("key id", "name", "scope", "rate", "created", "by", "status")
    for info in keys:
        table.add_row(
            info.api_key.key_id,
            info.api_key.name,
            _scope_text(info),
            _rate_text(info),
            info.created_at.isoformat(timespec="seconds"),
            info.created_by,
            "active" if info.active else f"revoked {_stamp(info)}",
        )
    out.print(table)


@keys_app.command("revoke")
@handle_errors
def revoke_key(key_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a key; gateways refuse it within a few seconds (their cache's lifetime)."""
    with _store() as store:
        info = store.revoke(key_id)
    if as_json:
        print_json(_info_dict(info))
        return
    err.print(f"key {key_id} revoked at {_stamp(info)}", highlight=False)


def _info_dict(info: KeyInfo) -> dict[str, Any]:
    key = info.api_key
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scopes": None if key.scopes is None else sorted(key.scopes),
        "admin": key.admin,
        "rate_per_second": key.rate_per_second,
        "created_at": info.created_at.isoformat(),
        "created_by": info.created_by,
        "revoked_at": None if info.revoked_at is None else info.revoked_at.isoformat(),
    }


def _scope_text(info: KeyInfo) -> str:
    if info.api_key.admin:
        return "admin"
    scopes = info.api_key.scopes
    return "every model" if scopes is None else ",".join(sorted(scopes))


def _rate_text(info: KeyInfo) -> str:
    rate = info.api_key.rate_per_second
    return "unlimited" if rate is None else f"{rate:g}/s"


def _stamp(info: KeyInfo) -> str:
    return info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "-"
