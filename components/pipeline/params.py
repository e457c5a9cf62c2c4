"""params.yaml for the pipeline: loading it and `--set section.key=value` overrides (like `dvc exp run -S`)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from components.common import StepError


def load_params(path: Path) -> dict[str, Any]:
    """The whole parameters file as a dict; StepError naming the file when it cannot be read."""
    import yaml

    try:
        params = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StepError(f"{path}: cannot read the parameters ({exc})") from exc
    if not isinstance(params, dict):
        raise StepError(f"{path}: expected a mapping of sections")
    return params


def apply_overrides(params: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `params` with each "a.b.c=VALUE" applied; VALUE is parsed as YAML ("2", "0.5", "{x: 1}").

    The dotted path walks nested mappings (creating missing levels); the last part is replaced whole, so a
    mapping whose keys contain dots (gate.minimums) is set as one YAML mapping:
    `gate.minimums={s4.test.miou: 0.6}`. StepError for a malformed override.
    """
    import yaml

    result = copy.deepcopy(params)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise StepError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise StepError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise StepError(f"--set {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return result
