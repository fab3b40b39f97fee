"""CPU time of a process and everything below it, from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo.extend(int(child) for child in task.read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its live children so far, in seconds."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS_PER_S


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (one this user may read), from /proc: the
    embedded broker's Tansu, or Apache Kafka's JVM; None if none is found."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and sockets & _open_files(entry):
            return int(entry.name)
    return None


def _open_files(process: Path) -> set[str]:
    """What ``process``'s descriptors point at; one closed meanwhile is skipped (a busy
    JVM opens and closes files all the time)."""
    found: set[str] = set()
    try:
        descriptors = list((process / "fd").iterdir())
    except OSError:  # not ours to read, or it ended meanwhile
        return found
    for descriptor in descriptors:
        try:
            found.add(os.readlink(descriptor))
        except OSError:
            continue
    return found
