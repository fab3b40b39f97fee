"""``maas tenants``: add, list, grant, revoke and remove tenants (namespaces of topics).

``add`` creates the tenant's topics (``maas.<name>.predict``, ``.results``,
``.retrain``); with ``--principal User:x`` it also creates the Kafka ACLs that confine
that principal to them (``maas/acls.py``), and refuses before changing anything where
the broker cannot enforce ACLs. Every change is announced on the control topic, so
workers read the tenant's grants again without a restart. ``--promote-always`` is the
operator's explicit grant to skip the promotion gate; no tenant has it otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeAlias

from rich.table import Table

from maas.commands import tokens
from maas.commands.common import (
    actor,
    add_kafka_options,
    add_registry_options,
    console,
    kafka_settings,
    with_registry,
)
from maas.errors import CommandError
from producer.control import announce_tenant
from producer.kafka import KafkaSettings, ensure_topics
from registry.errors import InvalidName, TenantNotFound
from registry.names import check_model_name, check_principal, check_tenant_name

if TYPE_CHECKING:
    from maas.acls import AclAdmin, Rule
    from registry import Registry, Tenant

Handler: TypeAlias = "Callable[[Registry, argparse.Namespace], int]"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tenants",
        help="add, list, grant, revoke and remove tenants",
        description="Tenants are namespaces of topics (maas.NAME.predict, .results, "
        ".retrain) with the models the operator granted them.",
    )
    verbs = parser.add_subparsers(dest="tenants_command", metavar="VERB", required=True)
    changes, reads = _options(changes=True), _options(changes=False)

    def verb(name: str, handler: Handler, text: str, *, change: bool = True) -> ArgumentParser:
        sub = verbs.add_parser(name, parents=[changes if change else reads], help=text)
        sub.description = text
        sub.set_defaults(func=with_registry(handler, create=change))
        if change:
            sub.add_argument("name", metavar="NAME", help="the tenant's name")
        return sub

    sub = verb("add", _add, "add a tenant: its topics, grants and (with --principal) Kafka ACLs")
    sub.add_argument(
        "--models", type=_model_list, default=[], metavar="M,...", help="models it may use"
    )
    _grant_flags(sub, "it may")
    sub.add_argument(
        "--principal",
        type=_argument(check_principal),
        metavar="User:NAME",
        help="the Kafka principal of its clients: ACLs let it write only this tenant's "
        "job topics and read only its results (Apache Kafka with an authorizer)",
    )
    verb("list", _list, "list tenants and their grants", change=False)
    for name, text in (
        ("grant", "let a tenant use more models, retrain them or skip the promotion gate"),
        ("revoke", "take models, the retrain or the promote-always grant from a tenant"),
    ):
        sub = verb(name, _change, text)
        sub.add_argument("models", nargs="*", type=_argument(check_model_name), metavar="MODEL")
        _grant_flags(sub, "it may" if name == "grant" else "it may no longer")
    verb("remove", _remove, "remove a tenant, its grants and its Kafka ACLs (topics stay)")
    tokens.register(verbs)


def _grant_flags(parser: ArgumentParser, lead: str) -> None:
    parser.add_argument("--retrain", action="store_true", help=f"{lead} retrain its models")
    parser.add_argument(
        "--promote-always",
        action="store_true",
        help=f'{lead} ask promote "always" in its retrain jobs, skipping the gate (an '
        "explicit operator grant: no tenant has it otherwise)",
    )


def _options(*, changes: bool) -> ArgumentParser:
    options = ArgumentParser(add_help=False)
    add_registry_options(options)
    add_kafka_options(options)  # list: which prefix the topics shown have
    if changes:
        options.add_argument(
            "--actor", help="who is acting, for the audit log (default: $USER@host)"
        )
    return options


def _argument(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a registry check: a name it refuses is a usage error."""

    def convert(text: str) -> str:
        try:
            return check(text)
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _model_list(text: str) -> list[str]:
    """``--models a,b``: model names, each checked."""
    return [_argument(check_model_name)(name.strip()) for name in text.split(",") if name.strip()]


# -- verbs --------------------------------------------------------------------------------


def _add(registry: Registry, args: argparse.Namespace) -> int:
    name = check_tenant_name(args.name)
    kafka = kafka_settings(args)
    namespace = kafka.topics.namespace(name)
    with _acl_admin(kafka, args.principal) as admin:  # refuses here if ACLs cannot be enforced
        tenant = registry.tenants.add(
            name,
            models=args.models,
            retrain=args.retrain,
            promote_always=args.promote_always,
            principal=args.principal,
            actor=actor(args),
        )
        with _removed_on_failure(registry, tenant, args):
            asyncio.run(ensure_topics(kafka, tenants=[name]))
            rules = _create_acls(admin, tenant, kafka)
    print(f"added tenant {name}: {_grants(tenant)}")
    print(f"topics: {namespace.predict}, {namespace.retrain}, {namespace.results}")
    for rule in rules:
        print(f"ACL: {rule.describe()}")
    _announce(kafka, name, "added", args)
    return 0


@contextlib.contextmanager
def _removed_on_failure(
    registry: Registry, tenant: Tenant, args: argparse.Namespace
) -> Iterator[None]:
    """Remove ``tenant`` again if the block fails (its topics or ACLs could not be made):
    nothing is left half-done, and the audit log shows both steps."""
    try:
        yield
    except BaseException:
        registry.tenants.remove(tenant.name, actor=actor(args))
        raise


def _create_acls(admin: AclAdmin | None, tenant: Tenant, kafka: KafkaSettings) -> list[Rule]:
    """Create the ACLs of ``tenant``'s principal; those made before the broker refused
    one are deleted again."""
    if admin is None or tenant.principal is None:
        return []
    from maas.acls import tenant_rules

    rules = tenant_rules(kafka.topics.namespace(tenant.name), tenant.principal)
    try:
        admin.create(rules)
    except BaseException:
        with contextlib.suppress(Exception):
            admin.delete(rules)
        raise
    return rules


def _list(registry: Registry, args: argparse.Namespace) -> int:
    tenants = registry.tenants.list()
    if not tenants:
        print("no tenants yet (the default tenant serves every model); add one with: "
              "maas tenants add NAME --models M,...")  # fmt: skip
        return 0
    topics = kafka_settings(args).topics
    table = Table("TENANT", "MODELS", "RETRAIN", "PROMOTE ALWAYS", "PRINCIPAL", "TOPICS", box=None)
    for tenant in tenants:
        table.add_row(
            tenant.name,
            ", ".join(sorted(tenant.models)) or "-",
            _yes(tenant.retrain),
            _yes(tenant.promote_always),
            tenant.principal or "-",
            f"{topics.namespace(tenant.name).stem}*",
        )
    console().print(table)
    return 0


def _change(registry: Registry, args: argparse.Namespace) -> int:
    """``grant`` or ``revoke``: the models and grants named, announced as one change."""
    named = [
        *args.models,
        *(["retrain"] if args.retrain else []),
        *(["promote always"] if args.promote_always else []),
    ]
    if not named:
        raise CommandError(
            f"nothing to {args.tenants_command}: name models, --retrain or --promote-always"
        )
    change = registry.tenants.grant if args.tenants_command == "grant" else registry.tenants.revoke
    tenant = change(
        args.name,
        args.models,
        retrain=args.retrain,
        promote_always=args.promote_always,
        actor=actor(args),
    )
    print(f"tenant {tenant.name}: {_grants(tenant)}")
    done = "granted" if args.tenants_command == "grant" else "revoked"
    _announce(kafka_settings(args), tenant.name, f"{done} {', '.join(named)}", args)
    return 0


def _remove(registry: Registry, args: argparse.Namespace) -> int:
    tenant = registry.tenants.get(args.name)
    if tenant is None:
        raise TenantNotFound(f"no tenant named {args.name!r}; maas tenants list shows the tenants")
    kafka = kafka_settings(args)
    with _acl_admin(kafka, tenant.principal) as admin:
        if admin is not None and tenant.principal is not None:
            from maas.acls import tenant_rules

            namespace = kafka.topics.namespace(tenant.name)
            deleted = admin.delete(tenant_rules(namespace, tenant.principal))
            print(f"deleted {deleted} Kafka ACLs of {tenant.principal}")
    registry.tenants.remove(tenant.name, actor=actor(args))
    stem = kafka.topics.namespace(tenant.name).stem
    print(f"removed tenant {tenant.name}; its topics ({stem}*) stay until you delete them")
    _announce(kafka, tenant.name, "removed", args)
    return 0


# -- helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _acl_admin(kafka: KafkaSettings, principal: str | None) -> Iterator[AclAdmin | None]:
    """With ``principal``: the ACL admin, once the broker showed it enforces ACLs and
    lets the operator manage them (:meth:`AclAdmin.check`); else None."""
    if principal is None:
        yield None
        return
    from maas.acls import AclAdmin  # imports kafka-python: only where ACLs are managed

    with AclAdmin(kafka) as admin:
        admin.check()
        yield admin


def _announce(kafka: KafkaSettings, tenant: str, change: str, args: argparse.Namespace) -> None:
    """Tell the workers; a broker that does not take it is a warning, not a failure (the
    registry has changed already)."""
    try:
        announce_tenant(kafka, tenant, change, actor=actor(args))
    except Exception as exc:
        print(
            f"warning: the workers were not told that tenant {tenant} was {change} ({exc}); "
            "they see it when they next read its grants",
            file=sys.stderr,
        )


def _grants(tenant: Tenant) -> str:
    models = ", ".join(sorted(tenant.models)) or "no models"
    extra = [
        *(["retrain"] if tenant.retrain else []),
        *(["promote always"] if tenant.promote_always else []),
    ]
    return models + "".join(f"; {grant}" for grant in extra)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
