"""chatterbot-corpus YAML: `categories:` and `conversations:`, a list of lists of turns.

Files are parsed with `yaml.compose` under the safe loader: it builds the node tree without
constructing any object, and the nodes carry the line of each conversation for `file:line`
sources and skips. Scalar turns are kept as written, so an unquoted `1963`, `3.10` or `yes` stays
"1963", "3.10", "yes" instead of becoming 1963, 3.1 or True; null turns count as empty. A
conversation that is not a list (trivia.yml has one long string), or a turn that is a list or
mapping, is `malformed`; so is a file that is not valid YAML or has no `conversations` list.

Hostile files cost one `malformed` skip, never memory or the stack: aliases (`*name`) are not
expanded, so "billion laughs" files cannot multiply a conversation or a long turn (a conversation
that is or holds an alias is skipped), and nesting deeper than `MAX_DEPTH` stops the file before
the recursive composer can exhaust the stack.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from chatbot.corpora._io import add_dialogue, expand, read_bytes
from chatbot.corpora.records import ImportResult, Skip
from chatbot.yaml_errors import yaml_problem

SUFFIXES = (".yml", ".yaml")
MAX_DEPTH = 20  # levels of nesting; a chatterbot file needs 4
_NULL = "tag:yaml.org,2002:null"
_ALIAS = "!chatbot/alias"  # the tag of the placeholder node `_Loader` puts where an alias was


class _LimitError(yaml.MarkedYAMLError):
    """Valid YAML this importer refuses to compose (too deeply nested)."""


class _Loader(yaml.SafeLoader):
    """The safe loader (its composer builds nodes, never Python objects) with two limits.

    An alias becomes a scalar placeholder node tagged `_ALIAS` holding the anchor's name, at the
    alias's own position, instead of the anchored node itself: nothing can be repeated, so the
    node tree stays as large as the file. A node deeper than `MAX_DEPTH` raises `_LimitError`.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            return yaml.ScalarNode(_ALIAS, event.anchor, event.start_mark, event.end_mark)
        if self._depth >= MAX_DEPTH:
            problem = f"YAML nested deeper than {MAX_DEPTH} levels; a chatterbot file needs 4"
            raise _LimitError(problem=problem, problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_chatterbot(paths: Sequence[Path]) -> Iterator[ImportResult]:
    """Read YAML files and directories of them (recursively, in sorted order), a file at a
    time."""
    for path in expand(paths, lambda name: name.endswith(SUFFIXES), "*.yml / *.yaml files"):
        yield parse(read_bytes(path), str(path))


def parse(data: bytes, file: str) -> ImportResult:
    """Conversations of one YAML file's bytes."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        detail = f"not valid utf-8: byte(s) {data[err.start : err.end]!r}"
        return ImportResult(skipped=[Skip(file, line, "undecodable", detail)])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except _LimitError as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else 0
        return ImportResult(skipped=[Skip(file, line, "malformed", str(err.problem))])
    except yaml.reader.ReaderError as err:
        # A character YAML forbids (NUL, most C0 controls...); its error has no line, only a
        # character position.
        line = text[: err.position].count("\n") + 1
        detail = f"not valid YAML: unacceptable character {chr(err.character)!r} ({err.reason})"
        return ImportResult(skipped=[Skip(file, line, "malformed", detail)])
    except yaml.YAMLError as err:
        line, problem = yaml_problem(err)
        detail = f"not valid YAML: {problem}"
        return ImportResult(skipped=[Skip(file, line or 0, "malformed", detail)])
    found = _conversations(root, file)
    if isinstance(found, Skip):
        return ImportResult(skipped=[found])
    result = ImportResult()
    for node in found.value:
        _add_conversation(result, file, node)
    return result


def _conversations(root: yaml.Node | None, file: str) -> yaml.SequenceNode | Skip:
    """The `conversations` sequence node, or a `malformed` skip saying what is wrong."""
    if root is None:
        return Skip(file, 0, "malformed", "empty file: no conversations")
    if not isinstance(root, yaml.MappingNode):
        detail = f"top level is a {_describe(root)}, expected a mapping with 'conversations'"
        return Skip(file, _line(root), "malformed", detail)
    values = [value for key, value in root.value if _is_conversations_key(key)]
    if not values:
        return Skip(file, _line(root), "malformed", "no 'conversations' key")
    if not isinstance(values[-1], yaml.SequenceNode):
        detail = f"'conversations' is a {_describe(values[-1])}, expected a list of conversations"
        return Skip(file, _line(values[-1]), "malformed", detail)
    return values[-1]


def _is_conversations_key(key: yaml.Node) -> bool:
    """Whether a mapping key is the scalar `conversations` (not an alias to anything)."""
    return isinstance(key, yaml.ScalarNode) and key.tag != _ALIAS and key.value == "conversations"


def _add_conversation(result: ImportResult, file: str, node: yaml.Node) -> None:
    line = _line(node)
    if not isinstance(node, yaml.SequenceNode) or node.tag == _ALIAS:
        detail = f"conversation is a {_describe(node)}, not a list of turns"
        result.skipped.append(Skip(file, line, "malformed", detail))
        return
    for index, turn in enumerate(node.value, start=1):
        if not isinstance(turn, yaml.ScalarNode) or turn.tag == _ALIAS:
            detail = f"turn {index} is a {_describe(turn)}, not a string"
            result.skipped.append(Skip(file, line, "malformed", detail))
            return
    texts = ["" if turn.tag == _NULL else turn.value for turn in node.value]
    add_dialogue(result, file, line, texts)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _describe(node: yaml.Node) -> str:
    """A node's type for messages: 'list', 'mapping', 'YAML alias (*name: ...)', or e.g.
    'str of 88 characters' (a custom tag or anchor name is cut to 40 characters)."""
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if node.tag == _ALIAS:
        return f"YAML alias (*{node.value[:40]}: aliases are not expanded)"
    return f"{node.tag.rsplit(':', 1)[-1][:40]} of {len(node.value)} characters"
