"""The ``MAAS_KAFKA_*`` settings, made into options that both Kafka client libraries take.

maas talks to Kafka through aiokafka (workers, the trainer, the async SDK) and
kafka-python (the sync SDK, ``maas submit``, control events). Both take the same SASL
options (``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``), but only
kafka-python reads TLS files (``ssl_cafile``, ...); aiokafka takes an ``ssl.SSLContext``
and nothing else. So the TLS files become one context, built here, that both get:
``MAAS_KAFKA_SECURITY_PROTOCOL=SASL_SSL``, ``MAAS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512``,
``MAAS_KAFKA_SASL_PLAIN_USERNAME``, ``MAAS_KAFKA_SASL_PLAIN_PASSWORD`` and
``MAAS_KAFKA_SSL_CAFILE`` (``MAAS_KAFKA_SSL_CERTFILE``/``_KEYFILE``/``_PASSWORD`` for
mutual TLS) reach every client alike.

Settings are checked when made, so that a wrong one stops a process at its start with
one :class:`~producer.errors.KafkaSettingsError` naming the variable. Secrets (the
passwords) never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from producer.errors import KafkaSettingsError

PREFIX = "MAAS_KAFKA_"

# Passed through as given: options that aiokafka and kafka-python both take.
_SHARED = frozenset(
    {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
    }
)
# Passed through as integers, to every client or to producers only.
_INTEGERS = frozenset({"request_timeout_ms", "metadata_max_age_ms", "connections_max_idle_ms"})
_PRODUCER_INTEGERS = frozenset({"max_request_size"})
# Made into the one ssl.SSLContext.
_TLS = frozenset(
    {"ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_check_hostname"}
)
_SECRETS = frozenset({"sasl_plain_password", "ssl_password"})
_KNOWN = _SHARED | _INTEGERS | _PRODUCER_INTEGERS | _TLS

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")
_NEEDS_PASSWORD = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_FALSE = frozenset({"0", "false", "no", "off"})


def variable(option: str) -> str:
    """The environment variable that sets a client option: ``MAAS_KAFKA_<OPTION>``."""
    return PREFIX + option.upper()


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """Security and tuning options for the Kafka clients, by their lower-case names
    (``{"security_protocol": "SASL_SSL", ...}``), checked when made."""

    settings: Mapping[str, str] = field(default_factory=dict)
    _ssl_context: ssl.SSLContext | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        _check(self.settings)
        if self.protocol.endswith("SSL"):
            object.__setattr__(self, "_ssl_context", _ssl_context(self.settings))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaOptions:
        """The ``MAAS_KAFKA_*`` variables of ``env`` (default: the process's)."""
        env = os.environ if env is None else env
        return cls(
            {
                key.removeprefix(PREFIX).lower(): value
                for key, value in env.items()
                if key.startswith(PREFIX)
            }
        )

    @property
    def protocol(self) -> str:
        return self.settings.get("security_protocol", "PLAINTEXT").upper()

    def common(self) -> dict[str, Any]:
        """The options to give every client: shared ones as given, integers as
        integers, the TLS files as ``ssl_context``."""
        options: dict[str, Any] = {}
        for option, value in self.settings.items():
            if option in _SHARED:
                options[option] = value.upper() if option == "security_protocol" else value
            elif option in _INTEGERS:
                options[option] = int(value)
        if self._ssl_context is not None:
            options["ssl_context"] = self._ssl_context
        return options

    def producer(self) -> dict[str, Any]:
        """The options to give producers besides :meth:`common` (``max_request_size``)."""
        return {o: int(v) for o, v in self.settings.items() if o in _PRODUCER_INTEGERS}

    def __reduce__(self) -> tuple[type[KafkaOptions], tuple[dict[str, str]]]:
        """Pickled as its settings (an SSLContext cannot be): a worker pool's processes
        each build their own context."""
        return (KafkaOptions, (dict(self.settings),))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{option}={'***' if option in _SECRETS else value!r}"
            for option, value in sorted(self.settings.items())
        )
        return f"KafkaOptions({shown})"


def _check(settings: Mapping[str, str]) -> None:
    """One error naming the first variable that no client could honour."""
    for option, value in settings.items():
        if option not in _KNOWN:
            known = ", ".join(variable(o) for o in sorted(_KNOWN))
            raise KafkaSettingsError(f"{variable(option)} is not a setting maas knows ({known})")
        if option in _INTEGERS | _PRODUCER_INTEGERS and not value.strip().isdigit():
            raise KafkaSettingsError(f"{variable(option)} must be a whole number")
    protocol = settings.get("security_protocol", "PLAINTEXT").upper()
    if protocol not in _PROTOCOLS:
        raise KafkaSettingsError(f"{variable('security_protocol')} must be one of {_PROTOCOLS}")
    _check_sasl(settings, sasl=protocol.startswith("SASL_"))
    if not protocol.endswith("SSL") and (tls := sorted(_TLS & settings.keys())):
        raise KafkaSettingsError(
            f"{variable(tls[0])} is set but {variable('security_protocol')} is {protocol}: "
            "set it to SSL or SASL_SSL to use TLS"
        )


def _check_sasl(settings: Mapping[str, str], *, sasl: bool) -> None:
    given = sorted(o for o in settings if o.startswith("sasl_"))
    if not sasl:
        if given:
            raise KafkaSettingsError(
                f"{variable(given[0])} is set but {variable('security_protocol')} is not "
                "SASL_SSL or SASL_PLAINTEXT"
            )
        return
    mechanism = settings.get("sasl_mechanism", "PLAIN")  # both clients' default
    if mechanism not in _MECHANISMS:
        raise KafkaSettingsError(f"{variable('sasl_mechanism')} must be one of {_MECHANISMS}")
    if mechanism in _NEEDS_PASSWORD:
        for option in ("sasl_plain_username", "sasl_plain_password"):
            if not settings.get(option):
                raise KafkaSettingsError(f"SASL {mechanism} needs {variable(option)}")


def _ssl_context(settings: Mapping[str, str]) -> ssl.SSLContext:
    """A client context that verifies the brokers against ``ssl_cafile`` (default: the
    system's CAs) and presents ``ssl_certfile`` when given (mutual TLS)."""
    cafile = settings.get("ssl_cafile")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except OSError as exc:  # ssl.SSLError included
        raise KafkaSettingsError(_unreadable("ssl_cafile", cafile, exc)) from None
    if certfile := settings.get("ssl_certfile"):
        try:
            context.load_cert_chain(
                certfile, settings.get("ssl_keyfile"), settings.get("ssl_password")
            )
        except OSError as exc:  # ssl.SSLError included
            raise KafkaSettingsError(_unreadable("ssl_certfile", certfile, exc)) from None
    elif "ssl_keyfile" in settings:
        raise KafkaSettingsError(f"{variable('ssl_keyfile')} needs {variable('ssl_certfile')}")
    if settings.get("ssl_check_hostname", "true").lower() in _FALSE:
        context.check_hostname = False
    return context


def _unreadable(option: str, path: str | None, exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):  # an OSError too, with the reason elsewhere
        reason = exc.reason or type(exc).__name__
    else:
        reason = exc.strerror or type(exc).__name__
    return f"{variable(option)}={path}: could not be loaded ({reason})"
