"""Apache Kafka's jars, fetched once through Maven into a cache folder.

The jars of ``org.apache.kafka:kafka_2.13`` and its runtime dependencies go to
``~/.cache/maas/kafka-<version>/libs`` (or ``$MAAS_APACHE_KAFKA_JARS``; a Kafka
distribution's ``libs/`` folder serves as well), outside the repository. Maven must be
on the PATH the first time.

(Not ``MAAS_KAFKA_JARS``: every ``MAAS_KAFKA_*`` variable is a Kafka client option.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

# The current release. Kafka 4 dropped the protocol versions older than Kafka 2.1; aiokafka
# 0.14 and kafka-python 3.0 do not need them: both produce (idempotent, and transactional
# for aiokafka), consume and join groups against it.
KAFKA_VERSION = "4.4.0"
# Kafka logs through SLF4J 1.7 but ships no binding; this one matches its log4j-core.
_SLF4J_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


class KafkaError(RuntimeError):
    """Apache Kafka could not be fetched or started; the message says why."""


def jars_folder(version: str = KAFKA_VERSION) -> Path:
    """Where the jars live: ``$MAAS_APACHE_KAFKA_JARS``, else the user's cache folder."""
    if override := os.environ.get("MAAS_APACHE_KAFKA_JARS"):
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "maas" / f"kafka-{version}" / "libs"


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder with Kafka's jars, fetched through Maven the first time (about a minute)."""
    libs = jars_folder(version)
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    if shutil.which("mvn") is None:
        raise KafkaError(
            "Apache Kafka's jars are fetched with Maven: install it (apt-get install maven) "
            "or set MAAS_APACHE_KAFKA_JARS to a folder that holds them"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=libs.parent, prefix="fetch-") as scratch:
        partial = Path(scratch) / "libs"
        _copy_dependencies(version, Path(scratch) / "pom.xml", partial)
        with contextlib.suppress(FileExistsError, OSError):  # another process was first
            partial.rename(libs)
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaError(f"Maven ran, but {libs} holds no kafka_2.13 jar")
    return libs


def _copy_dependencies(version: str, pom: Path, into: Path) -> None:
    dependencies = [f"org.apache.kafka:kafka_2.13:{version}", _SLF4J_BINDING]
    pom.write_text(_pom(dependencies))
    command = [
        "mvn", "-q", "-B", "-f", str(pom), f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={into}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise KafkaError(f"Maven could not fetch Apache Kafka {version}:\n{tail}")


def _pom(coordinates: Sequence[str]) -> str:
    dependencies = "".join(
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>"
        for group, artifact, version in (c.split(":") for c in coordinates)
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>maas</groupId><artifactId>kafka-jars</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>"
    )
