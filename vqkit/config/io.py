"""Reading and writing configs: YAML files over the typed defaults, dotted ``--set a.b=c`` overrides.

``load_config(path, overrides)`` -> :class:`~vqkit.config.schema.Config`; ``save_config(cfg, path)``
writes the resolved config (every default filled in), and loading that file again gives an equal
config. Unknown keys are an error that names the key and the nearest valid one, so a typo never
silently falls back to a default. An error names where the bad value came from: the YAML file (with
its line for a syntax error) or the ``--set`` override.

A list of data sources also takes a plain path, so ``--set data.train=data/x.jsonl`` means
``[{path: data/x.jsonl}]`` (several: ``--set 'data.train=[a.jsonl, b.jsonl]'``).

Blocks that several experiments share are written once: a file's top-level ``include:`` (a path, or a
list of paths, relative to that file) names YAML files merged in first, in order; the file's own keys
then go on top. Mappings merge key by key; a list or a value replaces what an include gave. Included
files may include others (a cycle is an error). A bad value is blamed on the file that set it (``BLOCK
(included by FILE): key: ...``). The resolved config ``save_config`` writes has no ``include``: it is every
value, spelled out.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from vqkit.config.schema import Config, SourceConfig
from vqkit.errors import ConfigError
from vqkit.utils.files import write_text_atomic


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting where it is lossless (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if tp is SourceConfig and isinstance(value, str):
        value = {"path": value}  # a source given by its path alone
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if args and args[0] is SourceConfig and isinstance(value, str):
            value = [value]  # one source: data.train=data/x.jsonl
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "3e-4" (no dot) as a string; accept what any reader means by it.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _unknown_key(cls, key: str, where: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
    return ConfigError(f"unknown config key '{where}{key}'{hint}")


def _from_dict(cls, data: dict, where: str = ""):
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key(cls, key, f"{where}." if where else "")
        kwargs[key] = _coerce(value, types_[key], f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as e:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from a (possibly partial) nested dict; missing keys take defaults."""
    return _from_dict(Config, data or {})


def to_dict(cfg) -> dict:
    """The config as plain nested dicts/lists (what save_config writes)."""
    return dataclasses.asdict(cfg)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like a.b=c")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply dotted ``a.b=c`` overrides (values parsed as YAML) to a nested dict, in place.

    Keys are checked against the dataclasses so a typo names the nearest valid key.
    """
    for text in overrides or []:
        path, value = _parse_override(text)
        cls, node = Config, data
        for i, key in enumerate(path):
            types_ = _field_types(cls) if cls is not None else None
            if types_ is not None and key not in types_:
                raise _unknown_key(cls, key, "".join(p + "." for p in path[:i]))
            if i == len(path) - 1:
                node[key] = value
                break
            tp = types_[key] if types_ is not None else None
            cls = tp if tp is not None and dataclasses.is_dataclass(tp) else None
            child = node.get(key)
            if child is None:
                child = {}
                node[key] = child
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(path[:i + 1])}' is not a section")
            node = child
    return data


INCLUDE_KEY = "include"


def merge_into(base: dict, top: dict) -> dict:
    """``top`` merged over ``base`` (a new dict, sharing nothing with either): mappings merge key by key,
    anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_into(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml_with_includes(path: Path, _chain: tuple[Path, ...] = (), *,
                            origins: dict[str, tuple[Path, Path | None]] | None = None) -> dict:
    """A config file as a nested dict, its ``include:`` files merged in first (see the module docstring).

    ``origins``, when given, receives for every dotted key the file whose value won and the file that
    included it (None for ``path`` itself), so an error can name where a bad value was written.
    """
    path = Path(path)
    if not path.is_file():
        where = f" (included by {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    if path.resolve() in [p.resolve() for p in _chain]:
        raise ConfigError(f"{path}: include cycle: {' -> '.join(str(p) for p in (*_chain, path))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (model:, data:, train:, eval:)")
    includes = data.pop(INCLUDE_KEY, None)
    if includes is None:
        includes = []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: {INCLUDE_KEY} must be a path or a list of paths, got {includes!r}")
    merged: dict = {}
    for include in includes:
        merged = merge_into(merged, read_yaml_with_includes(path.parent / include, (*_chain, path), origins=origins))
    if origins is not None:
        _record_origins(data, path, _chain[-1] if _chain else None, origins)
    return merge_into(merged, data) if includes else data


def _record_origins(data: dict, path: Path, includer: Path | None, origins: dict, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        origins[dotted] = (path, includer)
        if isinstance(value, dict):
            _record_origins(value, path, includer, origins, f"{dotted}.")


# The key an error message starts with ("train.lr: ...", "data.train[0]: ...") or names ("unknown config key 'x.y'").
_ERROR_KEY = re.compile(r"^(?:unknown config key '([\w.]+)'|([A-Za-z_][\w.]*)(?:\[\d+\][\w.]*)*: )")


def _where(error: ConfigError, path: Path, origins: dict) -> str:
    """The file to blame for ``error``: the one that set the key it names when an include did, else ``path``."""
    match = _ERROR_KEY.match(str(error))
    origin = origins.get(match.group(1) or match.group(2)) if match else None
    if origin is None or origin[1] is None:
        return str(path)
    return f"{origin[0]} (included by {origin[1]})"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML experiment over the defaults and apply ``a.b=c`` overrides.

    Errors (missing file, bad YAML, unknown key, wrong type, failed check) raise ConfigError with a
    one-line message naming where the bad value is: the file (``FILE:LINE:COLUMN`` for bad YAML) and
    key, or the ``--set`` override that made the config invalid.
    """
    data: dict = {}
    origins: dict[str, tuple[Path, Path | None]] = {}
    if path is not None:
        path = Path(path)
        data = read_yaml_with_includes(path, origins=origins)
    try:
        return config_from_dict(apply_overrides(copy.deepcopy(data), overrides))
    except ConfigError as e:
        error = e
    # Blame the file when it is bad on its own, else the first override after which the config is bad.
    for k in range(len(overrides or []) + 1):
        try:
            config_from_dict(apply_overrides(copy.deepcopy(data), (overrides or [])[:k]))
        except ConfigError as e:
            if k == 0:
                raise ConfigError(f"{_where(e, path, origins)}: {e}" if path is not None else str(e)) from None
            raise ConfigError(f"--set {overrides[k - 1]}: {e}") from None
    raise error


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """A YAML syntax error as ``FILE:LINE:COLUMN: not valid YAML (problem, context)`` in one line."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and context_mark is not None:
        problem += f" {context} that starts at line {context_mark.line + 1}"
    elif context:
        problem += f" {context}"
    return f"{where}: not valid YAML ({problem})"


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every default filled in) as YAML."""
    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
