"""Crash-safe writes: a file or directory appears complete under its final name, or not at all.

Files are written to a temporary sibling, flushed to disk, then renamed over the target, which
POSIX makes atomic. A directory is built under a temporary sibling name and renamed into place
only after everything in it is written, so a crash never leaves a half-written one that looks
complete, and a directory it replaces stays intact until the new one is ready. A write that
fails for lack of space raises `DiskFullError`, naming the path and saying the disk is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from chatbot.errors import ChatbotError, DataError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(ChatbotError, OSError):
    """A write failed for lack of space: a `ChatbotError` whose message names the path and says
    what was left intact, and still an `OSError` with the errno, for callers that catch those."""

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def explain_disk_full(target: str | Path, kept: Callable[[], str]) -> Iterator[None]:
    """Turn an `OSError` meaning "no space left" raised in the block into a `DiskFullError`
    about writing `target`; `kept()` says what is left intact."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        filename = str(error.filename or target)  # a nested DiskFullError names its file
        detail = os.strerror(error.errno)
        detail += f": {filename}" if filename != str(target) else ""
        message = f"{target}: cannot write, the disk is full ({detail}); {kept()}"
        raise DiskFullError(error.errno, message, filename) from error


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data`; readers see the old content or the new, never a mix."""
    path = Path(path)
    with explain_disk_full(path, lambda: "it is left as it was"):
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # mkstemp makes the file 0600: keep the mode of the file it replaces, or make it
            # readable by all like a file opened for writing, so a bundle copied into an image
            # that runs as another user can be read
            tmp.chmod(path.stat().st_mode & 0o7777 if path.exists() else 0o644)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes `final` when the block succeeds.

    If the block raises, the temporary directory is removed and `final` is untouched. With
    `overwrite`, an existing `final` is replaced only once the new content is complete. Running
    out of space, in the block or while committing, raises `DiskFullError`.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise DataError(f"{final}: already exists; choose another path or allow replacing it")

    def kept() -> str:
        return f"{final} is left as it was" if final.exists() else f"{final} was not created"

    with explain_disk_full(final, kept):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        # mkdtemp makes it 0700: a bundle copied into an image or served by another user must be
        # readable, like a directory made with mkdir.
        tmp.chmod(0o755)
        old = final.with_name(f".{final.name}.{tmp.name}.old")
        try:
            yield tmp
            for child in tmp.rglob("*"):
                if child.is_file():
                    with child.open("rb") as handle:
                        os.fsync(handle.fileno())
            _fsync_dir(tmp)
            if final.exists():
                final.replace(old)
            tmp.replace(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not final.exists():  # failed between the two renames
                old.replace(final)
            raise
    _fsync_dir(final.parent)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()
