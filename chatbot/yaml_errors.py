"""How a YAML parse error is told to people: the line it happened on and what went wrong, for
every message that names a YAML file (configs, bundles, ChatterBot corpora)."""

from __future__ import annotations

import yaml


def yaml_problem(error: yaml.YAMLError) -> tuple[int | None, str]:
    """(1-based line, or None when the error has no position; the problem, in YAML's words)."""
    mark = getattr(error, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    return line, str(getattr(error, "problem", None) or error)
