"""Opening a dataset file: confined to the data roots without a race, bounded in size.

The file is opened first and what was opened is checked after: the real path of the
open descriptor (``/proc/self/fd``, where the kernel says which file it is) must lie
inside one of the roots (resolved), and it must be a regular file no larger than the
operator's limit. A folder swapped for a symlink between a check and the open cannot
slip another file in: the check is of the opened file itself. Where ``/proc`` is
missing, the path is resolved after the open and must name the very file opened (same
device and inode), or the file is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from workers.recipes.base import DatasetError


def open_dataset(
    path: Path, *, roots: Sequence[Path] | None, max_bytes: int | None, shown: str
) -> BinaryIO:
    """``path`` opened for reading, if what was opened lies inside ``roots`` (None: any
    file) and holds at most ``max_bytes`` (None: any size); else :class:`DatasetError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise DatasetError(f"dataset file {shown!r} does not exist or is not a file") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DatasetError(f"dataset file {shown!r} does not exist or is not a file")
        if roots is not None and not _inside(_real_path(fd, path, info), roots):
            raise DatasetError(
                f"dataset {shown!r} is not inside the trainer's data roots; put the file in "
                "one (its operator sets them in MAAS_DATA_ROOTS) and name it by its path there"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise DatasetError(
                f"dataset file {shown!r} holds {info.st_size:,} bytes, over the trainer's "
                f"limit of {max_bytes:,} (maas trainer --max-dataset-mb, env "
                "MAAS_TRAIN_MAX_DATASET_MB); use a smaller file or ask its operator"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _real_path(fd: int, path: Path, opened: os.stat_result) -> Path | None:
    """The real path of the file open at ``fd``; None if it cannot be told for sure."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    try:
        real = path.resolve(strict=True)
        now = real.stat()
    except (OSError, RuntimeError):
        return None
    same = (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)
    return real if same else None


def _inside(real: Path | None, roots: Sequence[Path]) -> bool:
    if real is None:
        return False
    try:
        return any(real.is_relative_to(root.resolve()) for root in roots)
    except (OSError, RuntimeError, ValueError):
        return False
