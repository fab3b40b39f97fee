"""A SASL_SSL listener for Apache Kafka under test: a throwaway CA, a server certificate
for 127.0.0.1 and localhost, and SCRAM-SHA-512 users.

The certificates are made with the ``openssl`` command line (no Python package needed),
EC P-256 keys, valid for two days. The broker reads them as PEM (Kafka's
``ssl.keystore.type=PEM``); the users are written into the storage when it is formatted
(``kafka-storage format --add-scram``), so they exist before the broker serves. Brokers
talk to each other on the same listener, as the first user.

:meth:`SaslSsl.authorizer_properties` adds Kafka's StandardAuthorizer with the first
user as the only super user; the controller listener then authenticates too (SASL
PLAIN as that user: KRaft controllers cannot check SCRAM), so that no connection is
anonymous and nothing is allowed without an ACL.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MECHANISM = "SCRAM-SHA-512"
_DAYS = "2"
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"]
_SERVER_EXTENSIONS = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"


@dataclass(frozen=True, slots=True)
class SaslSsl:
    """TLS files in ``folder`` and SCRAM ``users`` (name → password); the first user is
    the brokers' own."""

    folder: Path
    users: Mapping[str, str]

    @classmethod
    def create(cls, folder: Path, users: Mapping[str, str] | None = None) -> SaslSsl:
        """Make the CA and the server's certificate in ``folder``; ``users`` default to
        one, ``admin``, with a random password."""
        folder.mkdir(parents=True, exist_ok=True)
        _make_certificates(folder)
        return cls(folder, dict(users or {"admin": secrets.token_urlsafe(16)}))

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def server_properties(self) -> dict[str, str]:
        """The listener's SASL and TLS settings (the listener itself is named SASL_SSL)."""
        name, password = next(iter(self.users.items()))
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{name}" password="{password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.folder / "server.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
        }

    def authorizer_properties(self) -> dict[str, str]:
        """ACLs enforced (StandardAuthorizer), the first user the only super user; the
        controller listener authenticates as that user (SASL_PLAINTEXT, PLAIN)."""
        name, password = next(iter(self.users.items()))
        return {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{name}",
            "allow.everyone.if.no.acl.found": "false",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{name}" password="{password}" user_{name}="{password}";'
            ),
        }

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the users."""
        return [
            argument
            for name, password in self.users.items()
            for argument in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
        ]

    def client_env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """The ``MAAS_KAFKA_*`` variables that connect as ``user`` (default: the first),
        with its password unless another is given."""
        user = user or next(iter(self.users))
        return {
            "MAAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "MAAS_KAFKA_SASL_MECHANISM": MECHANISM,
            "MAAS_KAFKA_SASL_PLAIN_USERNAME": user,
            "MAAS_KAFKA_SASL_PLAIN_PASSWORD": self.users[user] if password is None else password,
            "MAAS_KAFKA_SSL_CAFILE": str(self.ca_file),
        }


def _make_certificates(folder: Path) -> None:
    """ca.pem (and its key), server.pem: the server's key followed by its certificate,
    the one file a PEM keystore holds."""
    (folder / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl(folder, "req", "-x509", *_EC_KEY, "-keyout", "ca.key", "-out", "ca.pem",
             "-days", _DAYS, "-subj", "/CN=maas test CA")  # fmt: skip
    _openssl(folder, "req", *_EC_KEY, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost")  # fmt: skip
    _openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", _DAYS, "-extfile", "server.ext", "-out", "server.crt")  # fmt: skip
    key, certificate = (folder / "server.key").read_text(), (folder / "server.crt").read_text()
    (folder / "server.pem").write_text(key + certificate)


def _openssl(folder: Path, *arguments: str) -> None:
    done = subprocess.run(
        ["openssl", *arguments], cwd=folder, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {arguments[0]} failed: {done.stderr.strip()}")
