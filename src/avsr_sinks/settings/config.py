"""Load params.yaml plus overlays, merge them, and validate the result against the JSON schema.

params.yaml is the only configuration. Overlays (``--configfile configs/x.yaml`` in Snakemake) are
merged onto it key by key, the way Snakemake merges config files: mappings merge recursively, any other
value (lists included) replaces the earlier one. Errors name the key, the value and the file that set it.

Stricter than plain YAML and JSON Schema, where their defaults would let a mistake through: a key given
twice in one mapping and YAML 1.1's word booleans (yes, no, on, off) are refused by the loader, ``1e-3``
reads as a number (YAML 1.2) rather than a string, no value may be NaN or infinite, and ``integer`` in the
schema means an integer, not a float that happens to be whole (``epochs: 2.0``).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "params.schema.yaml"

KeyPath = tuple[str, ...]


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or does not match the schema."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and word booleans, and reads 1e-3 as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice in one mapping (first on line {seen[key] + 1}); the second "
                    "would silently win: keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_WORD_BOOLEAN = "tag:avsr-sinks:word-boolean"
# YAML 1.1 reads these as booleans (`on` is True), YAML 1.2 and JSON as strings: either reading may be
# what the writer meant, so neither is taken.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(
    _WORD_BOOLEAN,
    re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$"),
    list("yYnNoO"),
)
# YAML 1.1 needs a dot in a float, so PyYAML reads 1e-3 as the string "1e-3"; YAML 1.2 reads a number.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _refuse_word_boolean(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"{node.value!r} is a boolean in YAML 1.1 and a string in YAML 1.2; write true or false, or quote it "
        "if a string is meant",
        node.start_mark,
    )


_StrictLoader.add_constructor(_WORD_BOOLEAN, _refuse_word_boolean)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    try:
        with path.open(encoding="utf-8") as fh:
            loader = _StrictLoader(fh)
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from err


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    schema = read_yaml(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 2.0 as an integer; range(), torch threads and epoch counts do not.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _non_finite(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, float]]:
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [found for k, v in value.items() for found in _non_finite(v, (*path, str(k)))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _non_finite(v, (*path, str(i)))]
    return []


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
    if error.context:
        # oneOf / anyOf (a setting given once or per task): the branch that got furthest into the value
        # names the key and the value that is wrong, where the summary would only say "no branch fits".
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _describe(deepest, sources)
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
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_describe(e, sources) for e in errors] + [
        f"{_source_of(path, sources)}: key '{'.'.join(path)}' = {value}: not a finite number (NaN and "
        "infinities poison training: one step turns every weight into NaN); give a finite value"
        for path, value in _non_finite(params)
    ]
    if problems:
        details = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid configuration ({len(problems)} problem(s)):\n{details}")
    _check_cross_field(params, sources)


def _check_cross_field(params: Mapping[str, Any], sources: Mapping[KeyPath, str]) -> None:
    """Rules a JSON schema cannot state: relations between keys."""
    train = params["train"]
    if train["ctc_warmup_steps"] > 0 and train["ctc_weight"] == 0:
        path = ("train", "ctc_warmup_steps")
        raise ConfigError(
            f"{_source_of(path, sources)}: key 'train.ctc_warmup_steps' = {train['ctc_warmup_steps']} warms "
            "the projectors up on the CTC loss, but train.ctc_weight = 0 gives the model no CTC head: set "
            "train.ctc_warmup_steps to 0 or train.ctc_weight above 0"
        )
    window = params["audio_encoder"]["window_seconds"]
    if abs(window * 50 - round(window * 50)) > 1e-9:  # Whisper's encoder emits one frame per 20 ms
        path = ("audio_encoder", "window_seconds")
        raise ConfigError(
            f"{_source_of(path, sources)}: key 'audio_encoder.window_seconds' = {window} is not a whole "
            f"number of Whisper's 0.02 s encoder frames: use {round(window * 50) / 50:g} or another "
            "multiple of 0.02"
        )
    root = params["corpus"]["root"]
    if root.startswith("~"):
        path = ("corpus", "root")
        raise ConfigError(
            f"{_source_of(path, sources)}: key 'corpus.root' = {root!r} starts with '~', which nothing "
            "expands: write the full path"
        )
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
