"""A command that fails leaves no registry behind: the SQLite file and folders it would
create, noted before it opens the registry, are removed again if it fails.

A failed ``maas schedule add`` in an empty folder used to leave an empty
``.maas/registry.db`` there, which later commands then read instead of the real one.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from registry.settings import RegistrySettings, sqlite_path

_SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class Footprint:
    """What opening the registry would create: files and folders that do not exist yet."""

    files: tuple[Path, ...]
    folders: tuple[Path, ...]  # the outermost new folder of each chain

    @classmethod
    def of(cls, settings: RegistrySettings) -> Footprint:
        files: list[Path] = []
        folders = [_outermost_new(settings.artifact_dir)]
        database = sqlite_path(settings.database_url)
        if database is not None and not database.exists():
            files += [database, *(database.with_name(database.name + s) for s in _SQLITE_SIDECARS)]
            folders.append(_outermost_new(database.parent))
        return cls(tuple(files), tuple(f for f in folders if f is not None))

    @property
    def creates_registry(self) -> bool:
        return bool(self.files)

    def remove(self) -> None:
        """Remove what was created since :meth:`of` (only that: it did not exist then)."""
        for path in self.files:
            path.unlink(missing_ok=True)
        for folder in self.folders:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)


def _outermost_new(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (None: it
    exists)."""
    folder = folder.absolute()
    if folder.exists():
        return None
    while not folder.parent.exists():
        folder = folder.parent
    return folder
