"""DailyDialog (Li et al., 2017): one dialogue a line, each utterance ended by ` __eou__`.

Accepts the release zips (`train.zip` holds `train/dialogues_train.txt`), extracted
`dialogues_<split>.txt` files, or directories holding them. Only the dialogue text is read: the
act and emotion label files are ignored, so their known defects (one training dialogue has one act
label too few) cannot cost a dialogue. Speakers alternate and are named "A" and "B". Text is kept
as written apart from stripping; normalization happens later.

Zips are read in memory, never extracted, so member names such as `../x` cannot write anywhere;
names are only shown (escaped when they hold control characters). A zip that is corrupt,
encrypted, compressed other than stored or deflate (the release uses deflate; Python's bzip2 and
LZMA readers cannot bound their output), or would unpack to more than `MAX_UNPACKED_BYTES` of
dialogue text (a zip bomb) is a DataError naming the zip and member.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from chatbot.corpora._io import (
    TextLines,
    add_dialogue,
    expand,
    iter_line_blocks,
    read_bytes,
    split_lines,
)
from chatbot.corpora.records import ImportResult, Skip
from chatbot.errors import DataError

EOU = "__eou__"
ENCODING = "utf-8"
SPEAKERS = ("A", "B")
MAX_UNPACKED_BYTES = 512 * 1024 * 1024  # DailyDialog's own dialogue text is under 10 MB
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_CHUNK = 1024 * 1024  # bytes decompressed at a time, so a lying member cannot balloon at once
# What a damaged zip raises while it is opened, or a damaged member while it is read.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
_TEXT_FILE = re.compile(r"dialogues_\w+\.txt")
_LABEL_FILE = re.compile(r"dialogues_(act|emotion|topic)(_\w+)?\.txt")


def is_dialogues_file(name: str) -> bool:
    """Whether `name` is a `dialogues_<split>.txt` text file rather than a label file."""
    return bool(_TEXT_FILE.fullmatch(name)) and not _LABEL_FILE.fullmatch(name)


def read_dailydialog(paths: Sequence[Path]) -> Iterator[ImportResult]:
    """Read DailyDialog zips, dialogue files and directories, a zip member or a block of a
    file's lines at a time."""
    for path in expand(paths, is_dialogues_file, "dialogues_<split>.txt files"):
        if path.suffix.lower() == ".zip":
            for member, data in _zip_members(path):
                yield parse(split_lines(data, f"{path}/{member}", ENCODING))
        elif _LABEL_FILE.fullmatch(path.name):
            raise DataError(f"{path}: a label file, not dialogues; give dialogues_<split>.txt")
        else:
            yield from map(parse, iter_line_blocks(path, ENCODING))


def parse(text: TextLines) -> ImportResult:
    """Dialogues of one decoded dialogues file; blank lines are ignored."""
    result = ImportResult(skipped=list(text.skipped))
    for line in text.lines:
        *utterances, rest = line.text.split(EOU)
        if not utterances:
            detail = f"no {EOU} marker: not a DailyDialog dialogue line"
            result.skipped.append(Skip(text.file, line.number, "malformed", detail))
        elif rest.strip():
            detail = f"text after the last {EOU}: {rest.strip()[:60]!r}"
            result.skipped.append(Skip(text.file, line.number, "truncated", detail))
        else:
            speakers = [SPEAKERS[i % 2] for i in range(len(utterances))]
            add_dialogue(result, text.file, line.number, utterances, speakers)
    return result


def _zip_members(path: Path) -> list[tuple[str, bytes]]:
    """The dialogue text members of a release zip, in name order, with their bytes.

    Encryption, compression methods and declared sizes are checked from the zip's directory
    before anything is decompressed; members are then read in chunks, and one that unpacks to
    more than it declared is refused, so a hostile zip costs at most `MAX_UNPACKED_BYTES`.
    """
    data = read_bytes(path)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _CORRUPT as err:
        raise DataError(f"{path}: not a valid zip file: {err}") from err
    except NotImplementedError as err:  # e.g. "zip file version 8.4"
        raise DataError(f"{path}: uses a zip feature Python cannot read: {err}") from err
    with archive:
        infos = sorted(
            (i for i in archive.infolist() if _is_dialogues_member(i)), key=lambda i: i.filename
        )
        _check_members(path, infos)
        members = [(_shown(info.filename), _read_member(path, archive, info)) for info in infos]
    if not members:
        raise DataError(f"{path}: no dialogues_<split>.txt inside this zip")
    return members


def _is_dialogues_member(info: zipfile.ZipInfo) -> bool:
    # Not `info.is_dir()`: it raises IndexError for an empty name.
    return not info.filename.endswith("/") and is_dialogues_file(PurePosixPath(info.filename).name)


def _check_members(path: Path, infos: Sequence[zipfile.ZipInfo]) -> None:
    """DataError for a member that is encrypted or compressed other than stored or deflate, or
    when the members declare more than `MAX_UNPACKED_BYTES` together."""
    for info in infos:
        where = f"{path}: member {_shown(info.filename)}"
        if info.flag_bits & 0x1:
            raise DataError(f"{where} is encrypted; give an unencrypted zip")
        if info.compress_type not in _METHODS:
            known = ", ".join(_METHODS.values())
            raise DataError(
                f"{where} uses compression method {info.compress_type}; expected one of: {known}"
            )
    total = sum(info.file_size for info in infos)
    if total > MAX_UNPACKED_BYTES:
        raise DataError(
            f"{path}: dialogue members would unpack to {total:,} bytes, more than the "
            f"{MAX_UNPACKED_BYTES:,} allowed (a zip bomb?)"
        )


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, read a chunk at a time; DataError when it is damaged or unpacks to
    more than its declared size."""
    where = f"{path}: member {_shown(info.filename)}"
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                size += len(chunk)
                if size > info.file_size:
                    raise DataError(f"{where} unpacks to more than its declared size")
                chunks.append(chunk)
    except _CORRUPT as err:
        raise DataError(f"{where} is damaged: {err}") from err
    except NotImplementedError as err:  # "strong encryption (flag bit 6)", patched data...
        raise DataError(f"{where} uses a zip feature Python cannot read: {err}") from err
    return b"".join(chunks)


def _shown(name: str) -> str:
    """A member name as messages show it: escaped when it holds control characters, so a
    hostile name cannot break a one-line report or send terminal escape sequences."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
