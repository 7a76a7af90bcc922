"""Bringing a designer's pictures onto the server safely: a checked zip unpacker and folder picks confined to
configured data roots.

A zip from a browser is untrusted. :func:`unpack_zip` refuses, with one clear message each: entries with an
absolute path or a ``..`` component (a "zip slip" would write outside the target folder), links, more files
than allowed, a total size over the limit (checked on the sizes the archive declares and again on the bytes
actually inflated, since a crafted header can lie: decompression bombs, overlapping entries) and images with
more pixels than allowed (read from the image header, before anything decodes it). Files that are not
images are left out (a licence or readme note is kept: the data tools read it). Everything is written into a
fresh temporary folder that is renamed into place only when the whole archive passed.
"""

from __future__ import annotations

import shutil
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from PIL import Image

from atelier.errors import DataError
from atelier.images import IMAGE_SUFFIXES
from atelier.utils import temp_dir

__all__ = ["UploadLimits", "UnpackReport", "list_subfolders", "resolve_under", "unpack_zip"]

_NOTES = ("license", "licence", "copying", "readme", "notice", "attribution", "sources")
_CHUNK = 1 << 20


class UploadError(DataError):
    """An upload that breaks a rule (the studio answers 400, or 413 for a size limit)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on one dataset upload."""

    max_zip_bytes: int = 512 * 1024**2            # the archive as uploaded
    max_unpacked_bytes: int = 2 * 1024**3         # all files inflated
    max_files: int = 50_000                       # entries in the archive (folders not counted)
    max_image_pixels: int = 4096 * 4096           # each image, from its header (decompression bombs)


@dataclass
class UnpackReport:
    folder: Path
    images: int = 0
    bytes: int = 0
    left_out: list[str] = field(default_factory=list)   # not images (shown to the user)


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip entry name, or UploadError when it could leave the target folder."""
    if "\x00" in name:
        raise UploadError(f"zip entry {name!r:.80} has a NUL character in its name")
    posix = name.replace("\\", "/")  # archives made on Windows may use backslashes
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UploadError(f"zip entry {name!r:.80} has an absolute path; entries must be relative")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        raise UploadError(f"zip entry {name!r:.80} points outside the archive's folder ('..' in its path)")
    return parts


def _is_note(name: str) -> bool:
    p = PurePosixPath(name)
    return p.suffix.lower() in ("", ".txt", ".md", ".rst") and p.stem.lower().startswith(_NOTES)


def unpack_zip(archive: str | Path | IO[bytes], dest: str | Path, limits: UploadLimits = UploadLimits()
               ) -> UnpackReport:
    """Check and unpack a zip of images into ``dest`` (which must not exist yet). Raises :class:`UploadError`
    for any rule broken, leaving nothing behind."""
    dest = Path(dest)
    if dest.exists():
        raise UploadError(f"{dest.name} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise UploadError("the upload is not a readable .zip archive") from None
    tmp = temp_dir(dest.parent, prefix=f".{dest.name}.")
    report = UnpackReport(dest)
    try:
        with zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > limits.max_files:
                raise UploadError(f"the archive holds {len(members):,} files; the limit is {limits.max_files:,}",
                                  too_large=True)
            declared = sum(m.file_size for m in members)
            if declared > limits.max_unpacked_bytes:
                raise UploadError(f"the archive would unpack to {declared:,} bytes; the limit is "
                                  f"{limits.max_unpacked_bytes:,} (a decompression bomb, or too much data)",
                                  too_large=True)
            for info in members:
                parts = _safe_parts(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UploadError(f"zip entry {info.filename!r:.80} is a symbolic link; links are not accepted")
                if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue  # hidden files and macOS resource forks
                suffix = PurePosixPath(parts[-1]).suffix.lower()
                if suffix not in IMAGE_SUFFIXES and not _is_note(parts[-1]):
                    report.left_out.append(info.filename)
                    continue
                target = tmp.joinpath(*parts)
                if not target.resolve().is_relative_to(tmp.resolve()):  # belt and braces over _safe_parts
                    raise UploadError(f"zip entry {info.filename!r:.80} points outside the archive's folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                report.bytes += _copy_bounded(zf, info, target, limits.max_unpacked_bytes - report.bytes)
                if suffix in IMAGE_SUFFIXES:
                    _check_pixels(target, info.filename, limits.max_image_pixels)
                    report.images += 1
        if report.images == 0:
            raise UploadError("the archive holds no images (.png, .jpg, .webp, ...)")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _copy_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Inflate one entry, counting real bytes: a header that understates the size cannot exceed the budget."""
    written = 0
    try:
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > budget or written > info.file_size:
                    raise UploadError(f"zip entry {info.filename!r:.80} inflates beyond its declared size or the "
                                      "upload limit (a decompression bomb)", too_large=True)
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise UploadError(f"zip entry {info.filename!r:.80} cannot be read ({exc})") from None
    return written


def _check_pixels(path: Path, name: str, max_pixels: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                w, h = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"image {name!r:.80} is too large to decode safely (a decompression bomb)") from None
    except Exception:  # noqa: BLE001  (Pillow raises many types): the data tools skip unreadable files
        return
    if w * h > max_pixels:
        raise UploadError(f"image {name!r:.80} is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")


# ----------------------------------------------------------------------------------------- folder picks
def resolve_under(root: str | Path, relative: str) -> Path:
    """``root/relative`` when it is inside ``root`` after following links; DataError otherwise (an absolute
    path, ``..``, or a link that leads out)."""
    if "\x00" in relative:
        raise DataError("a folder path cannot hold a NUL character")
    rel = relative.replace("\\", "/").strip()
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise DataError(f"folder {relative!r:.80} must be relative to its data root")
    if any(p == ".." for p in PurePosixPath(rel).parts):
        raise DataError(f"folder {relative!r:.80} is outside the data root ('..' is not allowed)")
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        raise DataError(f"folder {relative!r:.80} is outside the data root (a link leads out of it)")
    if not path.is_dir():
        raise DataError(f"no folder {relative!r:.80} in this data root")
    return path


def list_subfolders(folder: Path, limit: int = 500) -> tuple[list[str], int]:
    """Names of the visible sub-folders of ``folder`` (at most ``limit``) and how many images it holds
    directly (counted up to 10,000)."""
    subs: list[str] = []
    n_images = 0
    for i, entry in enumerate(sorted(folder.iterdir())):
        if i > 20_000:
            break
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and len(subs) < limit:
            subs.append(entry.name)
        elif entry.suffix.lower() in IMAGE_SUFFIXES and n_images < 10_000:
            n_images += 1
    return subs, n_images
