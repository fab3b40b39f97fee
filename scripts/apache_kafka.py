"""Apache Kafka from its jars: a KRaft broker for the tests, the benchmark and by hand.

The jars of ``org.apache.kafka:kafka_2.13`` and its runtime dependencies are fetched
once through Maven into a cache folder outside the repository,
``~/.cache/maas/kafka-<version>/libs`` (or ``$MAAS_APACHE_KAFKA_JARS``; a Kafka
distribution's ``libs/`` folder serves as well). A broker is one JVM in combined mode
(broker and KRaft controller) on free ports, with its storage formatted afresh in a
folder of its own. Java 17 and Maven must be on the PATH.

By hand, from the project's root::

    python -m scripts.apache_kafka            # 127.0.0.1:9092 until Ctrl-C
    python -m scripts.apache_kafka --fetch    # only fetch the jars (CI warms its cache)

(Not ``MAAS_KAFKA_JARS``: every ``MAAS_KAFKA_*`` variable is a Kafka client option.)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from maas.broker import accepting

# The current release. Kafka 4 dropped the protocol versions older than Kafka 2.1; aiokafka
# 0.14 and kafka-python 3.0 do not need them: both produce (idempotent, and transactional
# for aiokafka), consume and join groups against it.
KAFKA_VERSION = "4.4.0"
# Kafka logs through SLF4J 1.7 but ships no binding; this one matches its log4j-core.
_SLF4J_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

_LOG_CONFIG = """\
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
"""


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


def server_properties(host: str, port: int, controller_port: int, data: Path) -> dict[str, str]:
    """One node that is broker and controller, tuned to start fast on a small machine."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data),
        # One broker: internal topics with one replica and few partitions (quick to create).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


@dataclass
class ApacheKafka:
    """An Apache Kafka broker (KRaft, combined mode) on ``host:port`` (free when 0).

    ``properties`` override or add server properties (listeners for SASL_SSL, ACLs, ...).
    ``workdir`` keeps the storage and ``server.log`` (default: a temporary folder that
    :meth:`stop` removes).
    """

    port: int = 0
    host: str = "127.0.0.1"
    version: str = KAFKA_VERSION
    properties: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    heap: str = "512m"
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _folder: Path | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._folder is None else self._folder / "server.log"

    def start(self, timeout_s: float = 60.0) -> ApacheKafka:
        if self.port and accepting(self.host, self.port):
            raise KafkaError(
                f"port {self.port} on {self.host} is already in use; "
                "stop what listens there or pass another --port"
            )
        libs = fetch_jars(self.version)
        self._folder = self.workdir or Path(tempfile.mkdtemp(prefix="maas-kafka-"))
        self._folder.mkdir(parents=True, exist_ok=True)
        port, controller_port = _free_ports(self.host, 2)
        self.port = self.port or port
        config = self._write_config(controller_port)
        self._format(libs, config)
        with open(self._folder / "server.log", "ab") as log:
            self._process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout_s)
        return self

    def _write_config(self, controller_port: int) -> Path:
        assert self._folder is not None
        settings = {
            **server_properties(self.host, self.port, controller_port, self._folder / "data"),
            **self.properties,
        }
        config = self._folder / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (self._folder / "log4j2.properties").write_text(_LOG_CONFIG)
        return config

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        assert self._folder is not None
        return [
            "java", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._folder / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main, *args,
        ]  # fmt: skip

    def _format(self, libs: Path, config: Path) -> None:
        """``kafka-storage format``: a fresh cluster id, storage for this run only."""
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id)
        done = subprocess.run(
            [*command, "-c", str(config)], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise KafkaError(f"formatting Kafka's storage failed:\n{done.stdout}{done.stderr}")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not (accepting(self.host, self.port) and _serves_metadata(self.bootstrap_servers)):
            if self._process is None or self._process.poll() is not None:
                self._fail("exited while starting")
            if time.monotonic() > deadline:
                self._fail(f"did not answer on {self.bootstrap_servers} within {timeout_s:g}s")
            time.sleep(0.2)

    def _fail(self, what: str) -> None:
        tail = ""
        if self.log_path is not None and self.log_path.exists():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        self.stop()
        raise KafkaError(f"Apache Kafka {self.version} {what}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 20 s; the temporary folder goes."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        folder, self._folder = self._folder, None
        if folder is not None and self.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_ports(host: str, count: int) -> list[int]:
    """Ports free now, distinct (all are held until every one is known)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _serves_metadata(bootstrap_servers: str) -> bool:
    """The broker answers a metadata request that lists it (it is unfenced and serving)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError as ClientError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=2000,
            reconnect_backoff_max_ms=200,  # a broker still starting: ask again soon
        )
    except ClientError:
        return False
    try:
        return bool(admin.describe_cluster()["brokers"])
    except ClientError:
        return False
    finally:
        admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.apache_kafka",
        description="Run Apache Kafka (KRaft, one node) from its jars until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092)")
    parser.add_argument("--version", default=KAFKA_VERSION, help=f"default {KAFKA_VERSION}")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server property to set or override (repeatable)",
    )
    parser.add_argument("--fetch", action="store_true", help="only fetch the jars, then exit")
    args = parser.parse_args(argv)
    if args.fetch:
        print(fetch_jars(args.version))
        return 0
    properties = dict(item.split("=", 1) for item in args.property)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ApacheKafka(port=args.port, version=args.version, properties=properties) as kafka:
        print(
            f"Apache Kafka {kafka.version} listening on {kafka.bootstrap_servers} "
            f"(log: {kafka.log_path}); Ctrl-C stops it",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                if not kafka.running():
                    print("Apache Kafka exited", flush=True)
                    return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
