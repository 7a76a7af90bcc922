"""Downloads with sha256 checks into atelier's cache, for users who are online.

Nothing at run time in tests downloads from the internet: the tests point ``ATELIER_DATA_URL`` (or
the ``mirror`` argument) at a local HTTP server. A download goes to a temporary file beside its
destination and is renamed into place only after its checksum matched, so a failed or interrupted
download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from atelier.errors import DownloadError
from atelier.utils import normal_mode

__all__ = ["cache_dir", "download"]


def cache_dir() -> Path:
    """``$ATELIER_CACHE`` or ``$XDG_CACHE_HOME/atelier`` or ``~/.cache/atelier``."""
    if env := os.environ.get("ATELIER_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "atelier"


def download(urls: Sequence[str], dest: Path, sha256: str, timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch the first URL that works into ``dest``; verify ``sha256``; atomic rename."""
    if os.environ.get("ATELIER_OFFLINE"):
        raise DownloadError(f"{dest.name} is not available locally and ATELIER_OFFLINE is set")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.fchmod(fd, normal_mode())  # a cached download is readable like any file the user writes
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                          leave=False) as bar:
                    while block := resp.read(1 << 16):
                        fh.write(block)
                        digest.update(block)
                        bar.update(len(block))
            if digest.hexdigest() != sha256:
                errors.append(f"{url}: checksum mismatch (sha256 {digest.hexdigest()}, expected {sha256})")
                continue
            os.replace(tmp, dest)
            return dest
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            errors.append(f"{url}: {reason}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(errors))
