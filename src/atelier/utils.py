"""Small helpers shared across atelier: atomic file writes and hashing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from atelier.errors import MissingExtraError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "normal_mode", "require_extra", "sha256_file",
           "temp_dir"]


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (a process-wide value, read once per write).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_mode(directory: bool = False) -> int:
    """The permissions a plain ``open(path, "w")`` (0o666) or ``mkdir`` (0o777) would give under the umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create 0o600 / 0o700 entries on purpose; a file renamed into place
    from one would keep them, so a web server or a teammate could not read what atelier wrote.
    """
    return (0o777 if directory else 0o666) & ~_umask()


def temp_dir(parent: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """A fresh folder in ``parent`` (for an atomic folder swap), with a normal folder's permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(tmp, normal_mode(directory=True))
    return tmp


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync it and rename it into place.

    A crash (even kill -9) at any moment leaves either the old file or the new one, never a torn one,
    because ``os.replace`` is atomic within one filesystem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, normal_mode())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    atomic_write(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_extra(module: str, extra: str, feature: str) -> Any:
    """Import an optional dependency, or raise one clear line saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{feature} needs the optional package {module.split('.')[0]!r}; "
                                f"install it with: pip install 'atelier[{extra}]'") from None
