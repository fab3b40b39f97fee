"""``maas tenants token create NAME | list NAME | revoke TOKEN_ID``: gateway tokens.

``create`` prints the token once (the registry keeps only its SHA-256); ``revoke``
stops it working on every gateway within their ``--token-ttl-s`` (default 2 s).
"""

from __future__ import annotations

import argparse
import sys

from rich.table import Table

from maas.commands.common import (
    RegistryHandler,
    actor,
    add_registry_options,
    console,
    with_registry,
)
from registry import Registry


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "token",
        help="bearer tokens for the gateway: create, list, revoke",
        description="A gateway caller's bearer token names its tenant; only a hash is stored.",
    )
    token_verbs = parser.add_subparsers(dest="token_command", metavar="VERB", required=True)
    create = _verb(token_verbs, "create", _create, "make a token for a tenant; printed once")
    create.add_argument("name", metavar="NAME", help="the tenant")
    listed = _verb(token_verbs, "list", _list, "list a tenant's tokens (never the secrets)")
    listed.add_argument("name", metavar="NAME", help="the tenant")
    revoke = _verb(token_verbs, "revoke", _revoke, "revoke a token: refused within seconds")
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the id `list` shows")


def _verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: RegistryHandler,
    text: str,
) -> argparse.ArgumentParser:
    sub = verbs.add_parser(name, help=text, description=text)
    add_registry_options(sub)
    if name != "list":
        sub.add_argument("--actor", help="who is acting, for the audit log (default: $USER@host)")
    sub.set_defaults(func=with_registry(handler, create=name != "list"))
    return sub


def _create(registry: Registry, args: argparse.Namespace) -> int:
    token, secret = registry.tokens.create(args.name, actor=actor(args))
    print(secret)
    print(
        f"token {token.id} for tenant {token.tenant}: shown once, only its hash is kept. "
        "Callers send it as 'Authorization: Bearer <token>'",
        file=sys.stderr,
    )
    return 0


def _list(registry: Registry, args: argparse.Namespace) -> int:
    tokens = registry.tokens.list(args.name)
    if not tokens:
        print(
            f"tenant {args.name} has no tokens; make one with: maas tenants token create {args.name}"
        )
        return 0
    table = Table("ID", "CREATED", "BY", "REVOKED", box=None)
    for token in tokens:
        revoked = token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "-"
        table.add_row(
            token.id, token.created_at.isoformat(timespec="seconds"), token.created_by, revoked
        )
    console().print(table)
    return 0


def _revoke(registry: Registry, args: argparse.Namespace) -> int:
    token = registry.tokens.revoke(args.token_id, actor=actor(args))
    print(f"revoked token {token.id} of tenant {token.tenant}; gateways refuse it within seconds")
    return 0
