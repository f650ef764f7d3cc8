"""DailyDialog (Li et al., 2017): one dialogue a line, each utterance ended by ` __eou__`.

Accepts the release zips (`train.zip` holds `train/dialogues_train.txt`), extracted
`dialogues_<split>.txt` files, or directories holding them. Only the dialogue text is read: the
act and emotion label files are ignored, so their known defects (one training dialogue has one act
label too few) cannot cost a dialogue. Speakers alternate and are named "A" and "B". Text is kept
as written apart from stripping; normalization happens later.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from chatbot.corpora._io import TextLines, add_dialogue, expand, read_bytes, read_lines, split_lines
from chatbot.corpora.records import ImportResult, Skip
from chatbot.errors import DataError

EOU = "__eou__"
ENCODING = "utf-8"
SPEAKERS = ("A", "B")
_TEXT_FILE = re.compile(r"dialogues_\w+\.txt")
_LABEL_FILE = re.compile(r"dialogues_(act|emotion|topic)(_\w+)?\.txt")


def is_dialogues_file(name: str) -> bool:
    """Whether `name` is a `dialogues_<split>.txt` text file rather than a label file."""
    return bool(_TEXT_FILE.fullmatch(name)) and not _LABEL_FILE.fullmatch(name)


def read_dailydialog(paths: Sequence[Path]) -> ImportResult:
    """Read DailyDialog zips, dialogue files and directories into one result."""
    result = ImportResult()
    for path in expand(paths, is_dialogues_file, "dialogues_<split>.txt files"):
        if path.suffix.lower() == ".zip":
            for member, data in _zip_members(path):
                result.extend(parse(split_lines(data, f"{path}/{member}", ENCODING)))
        elif _LABEL_FILE.fullmatch(path.name):
            raise DataError(f"{path}: a label file, not dialogues; give dialogues_<split>.txt")
        else:
            result.extend(parse(read_lines(path, ENCODING)))
    return result


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
    """The dialogue text members of a release zip, in name order, with their bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(read_bytes(path))) as archive:
            names = sorted(
                n for n in archive.namelist() if is_dialogues_file(PurePosixPath(n).name)
            )
            members = [(name, archive.read(name)) for name in names]
    except zipfile.BadZipFile as err:
        raise DataError(f"{path}: not a valid zip file: {err}") from err
    if not members:
        raise DataError(f"{path}: no dialogues_<split>.txt inside this zip")
    return members
