"""free_port: ports for test and embedded servers that no outgoing connection can take."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from maas import broker
from maas.broker import free_port


def _ephemeral() -> range:
    low, high = (
        int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    return range(low, high + 1)


def test_ports_are_outside_the_range_outgoing_connections_draw_from() -> None:
    ports = [free_port() for _ in range(50)]
    assert not [port for port in ports if port in _ephemeral()]


def test_never_the_same_port_twice_and_each_one_binds() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_a_port_held_by_a_listener_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held = listener.getsockname()[1]
        monkeypatch.setattr(broker, "_unassigned_ports", lambda: range(held, held + 2))
        assert free_port() == held + 1
