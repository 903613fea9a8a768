"""A configuration written as TOML, and compared with the one a run folder was made with."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from rolemodels.config import Config, flatten, to_dict


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string, control characters escaped
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def to_toml(cfg: Config | dict[str, Any]) -> str:
    """A configuration (or any nested dict of TOML values) as TOML that `load_config` (tomllib)
    reads back unchanged: top-level keys first, then one table per section."""
    tree = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    top, sections = [], []

    def table(name: str, body: dict[str, Any]) -> None:
        sections.append(f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in body.items()
                                                 if not isinstance(v, dict)))
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for key, value in tree.items():
        if isinstance(value, dict):
            table(key, value)
        else:
            top.append(f"{key} = {_toml_value(value)}")
    return "\n".join(top) + "\n\n" + "\n".join(sections)


def config_differences(old: dict, new: dict, ignore: set[str] = frozenset()) -> list[str]:
    """["teachers.epochs 30 -> 40", ...]: the dotted keys whose values differ.

    A key in `ignore` (or below a section in `ignore`) does not count.
    """
    old_flat, new_flat = flatten(old), flatten(new)
    show = lambda flat, key: json.dumps(flat[key]) if key in flat else "(unset)"
    ignored = lambda key: any(key == i or key.startswith(i + ".") for i in ignore)
    keys = list(old_flat) + [key for key in new_flat if key not in old_flat]
    return [f"{key} {show(old_flat, key)} -> {show(new_flat, key)}" for key in keys
            if not ignored(key) and (key not in old_flat or key not in new_flat
                                     or old_flat[key] != new_flat[key])]


def fill_missing(old: dict, defaults: dict) -> dict:
    """`old` with the keys it lacks taken from `defaults`, section by section (a run folder made
    before a key existed counts as having the key's default)."""
    filled = dict(old)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = fill_missing(filled[key], value)
    return filled
