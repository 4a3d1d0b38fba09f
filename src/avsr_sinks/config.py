"""Load params.yaml plus overlays, merge them, and validate the result against the JSON schema.

params.yaml is the only configuration. Overlays (``--configfile configs/x.yaml`` in Snakemake) are
merged onto it key by key, the way Snakemake merges config files: mappings merge recursively, any other
value (lists included) replaces the earlier one. Errors name the key, the value and the file that set it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "params.schema.yaml"

KeyPath = tuple[str, ...]


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or does not match the schema."""


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from err


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    schema = read_yaml(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _merge(
    base: dict[str, Any],
    overlay: Mapping[str, Any],
    sources: dict[KeyPath, str],
    source: str,
    prefix: KeyPath = (),
) -> None:
    for key, value in overlay.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, sources, source, path)
        else:
            base[key] = copy.deepcopy(value)
            _record_sources(value, sources, source, path)


def _record_sources(value: Any, sources: dict[KeyPath, str], source: str, path: KeyPath) -> None:
    sources[path] = source
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _record_sources(sub, sources, source, (*path, str(key)))


def _source_of(path: KeyPath, sources: Mapping[KeyPath, str]) -> str:
    for end in range(len(path), 0, -1):
        if path[:end] in sources:
            return sources[path[:end]]
    return next(iter(sources.values()), "<config>")


def _describe(error: jsonschema.ValidationError, sources: Mapping[KeyPath, str]) -> str:
    path: KeyPath = tuple(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        lines = []
        for key in unknown:
            full = (*path, key)
            lines.append(
                f"{_source_of(full, sources)}: unknown key '{'.'.join(full)}' "
                f"(allowed here: {', '.join(sorted(allowed))})"
            )
        return "\n".join(lines)
    key = ".".join(path) or "<top level>"
    return f"{_source_of(path, sources)}: key '{key}' = {error.instance!r}: {error.message}"


def validate(
    params: Mapping[str, Any],
    sources: Mapping[KeyPath, str] | None = None,
    schema: Mapping[str, Any] | None = None,
) -> None:
    """Raise ConfigError listing every schema violation, each naming key, value and file."""
    schema = schema if schema is not None else load_schema()
    sources = sources or {}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        details = "\n".join(f"  - {_describe(e, sources)}" for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n{details}")
    _check_cross_field(params, sources)


def _check_cross_field(params: Mapping[str, Any], sources: Mapping[KeyPath, str]) -> None:
    """Rules a JSON schema cannot state: relations between keys."""
    synth = params["corpus"]["synth"]
    if synth["min_words"] > synth["max_words"]:
        path = ("corpus", "synth", "min_words")
        raise ConfigError(
            f"{_source_of(path, sources)}: key 'corpus.synth.min_words' = {synth['min_words']} is larger "
            f"than corpus.synth.max_words = {synth['max_words']}"
        )


def load_params(files: Sequence[str | Path]) -> dict[str, Any]:
    """Merge ``files`` in order (the first is params.yaml, the rest overlays) and validate the result."""
    if not files:
        raise ConfigError("no configuration file given (expected params.yaml and optional overlays)")
    merged: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
    for file in files:
        data = read_yaml(file)
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: top level must be a mapping of sections, got {type(data).__name__}")
        _merge(merged, data, sources, str(file))
    validate(merged, sources)
    return merged
