"""Typed configs: YAML files validated against dataclass schemas.

A config file is plain YAML (read with ``yaml.safe_load``) whose keys mirror a dataclass schema; nested
dataclasses are nested mappings. Rules:

- ``base: other.yaml`` (path relative to the file) inherits one other file; the child's keys override the base's,
  mapping by mapping. A base may itself have a base; cycles are an error.
- ``--set a.b=value`` overrides one key after the files are merged. The value is parsed as YAML (``3`` -> int,
  ``true`` -> bool, ``[1, 2]`` -> list) except for string fields, which take the text verbatim.
- Unknown keys and wrong types raise :class:`ConfigError` naming the key, where it came from (file or ``--set``),
  the valid keys and the closest match. No key is ever silently ignored.
- Float fields also accept YAML strings such as ``2e-3`` (PyYAML reads exponents without a dot as strings);
  int fields accept integral floats written as ``1e3``. Nothing else is converted.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

BASE_KEY = "base"


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Read ``path`` (with its ``base:`` chain), apply ``--set`` ``overrides``, validate against ``schema``.

    ``path=None`` starts from the schema's defaults.
    """
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        data, origin = _read_with_bases(Path(path), seen=())
    for override in overrides:
        _apply_override(schema, data, origin, override)
    return _build(schema, data, origin, prefix="")


def config_row(config_dir: Path, name: str) -> Path:
    """``<config_dir>/<name>.yaml`` for a paper package's table-row name, or ``name`` itself when it is a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return Path(config_dir) / f"{name}.yaml"


def config_rows(config_dir: Path) -> list[str]:
    """The row names of the YAML files in a paper package's ``configs/``."""
    return sorted(p.stem for p in Path(config_dir).glob("*.yaml"))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The raw mapping of a config file with its ``base:`` chain merged, before any validation (e.g. to read which
    schema applies)."""
    data, _ = _read_with_bases(Path(path), seen=())
    return data


def config_from_dict(schema: type[T], data: Mapping[str, Any], source: str = "<dict>") -> T:
    """Validate an in-memory mapping (e.g. the config stored in a checkpoint) against ``schema``."""
    origin = {key: source for key in _dotted_keys(data)}
    return _build(schema, dict(data), origin, prefix="")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-safe data (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config (every value, defaults included) as YAML; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"'base:' inheritance cycle: {chain}")
    if not path.is_file():
        hint = f" (inherited by {seen[-1]})" if seen else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys at the top level, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"'base:' in {path} must be one file path, got {base!r}")
        merged, origin = _read_with_bases(path.parent / base, seen=(*seen, resolved))
    _merge(merged, data)
    origin.update({key: str(path) for key in _dotted_keys(data)})
    return merged, origin


def _merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value


def set_overrides(sections: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{'augment': {'mode': 'ada'}, 'methods': [...]}`` -> ``['augment.mode=ada', 'methods=[...]']``, the
    ``--set`` strings :func:`load_config` takes (non-string values JSON-encoded)."""
    out = []
    for key, value in sections.items():
        if isinstance(value, Mapping):
            out += set_overrides(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


def _fields(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema) if f.init}


def _unknown_key(key: str, dotted: str, source: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    section = dotted.rpartition(".")[0]
    where = f"'{section}'" if section else "the top level"
    return ConfigError(
        f"unknown config key '{key}' (at '{dotted}') in {source}; valid keys of {where}: {', '.join(valid)}{hint}"
    )


def _apply_override(schema: type, data: dict[str, Any], origin: dict[str, str], override: str) -> None:
    source = f"--set {override}"
    dotted, sep, text = override.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        raise ConfigError(f"{source}: expected the form key.subkey=value")
    parts = dotted.split(".")
    target: type | None = schema
    node = data
    for depth, key in enumerate(parts):
        if target is None:  # inside a free-form dict field
            field_type: Any = Any
        else:
            fields = _fields(target)
            if key not in fields:
                raise _unknown_key(key, ".".join(parts[: depth + 1]), source, list(fields))
            field_type = fields[key]
        if depth == len(parts) - 1:
            null = _is_union(field_type) and type(None) in typing.get_args(field_type) and text.strip() in ("null", "~")
            node[key] = text if _is_str_type(field_type) and not null else _parse_yaml_value(text, source)
            origin[dotted] = source
            for inner in _dotted_keys(node[key], dotted + ".") if isinstance(node[key], Mapping) else []:
                origin[inner] = source
            return
        inner_type = _strip_optional(field_type)
        if dataclasses.is_dataclass(inner_type):
            target = inner_type
        elif typing.get_origin(inner_type) in (dict, Mapping) or inner_type is Any:
            target = None
        else:
            raise ConfigError(
                f"{source}: '{'.'.join(parts[: depth + 1])}' is a {_type_name(field_type)}, not a section"
            )
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child


def _parse_yaml_value(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: value is not valid YAML: {err}") from None


def _strip_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_str_type(tp: Any) -> bool:
    return _strip_optional(tp) in (str, Path)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _build(schema: type[T], data: Mapping[str, Any], origin: dict[str, str], prefix: str) -> T:
    fields = _fields(schema)
    for key in data:
        if key not in fields:
            dotted = prefix + key
            raise _unknown_key(key, dotted, origin.get(dotted, "the config"), list(fields))
    kwargs = {key: _coerce(value, fields[key], prefix + key, origin) for key, value in data.items()}
    return schema(**kwargs)


def _coerce(value: Any, tp: Any, dotted: str, origin: dict[str, str]) -> Any:
    def wrong() -> ConfigError:
        source = origin.get(dotted, "the config")
        return ConfigError(
            f"wrong type for config key '{dotted}' in {source}: expected {_type_name(tp)}, "
            f"got {type(value).__name__} {value!r}"
        )

    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted, origin)
            except ConfigError:
                continue
        raise wrong()
    kind = typing.get_origin(tp)
    if kind is typing.Literal:
        if value in typing.get_args(tp):
            return value
        source = origin.get(dotted, "the config")
        choices = ", ".join(repr(c) for c in typing.get_args(tp))
        raise ConfigError(f"invalid value {value!r} for config key '{dotted}' in {source}; choose one of {choices}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise wrong()
        return _build(tp, value, origin, dotted + ".")
    if kind in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{dotted}[{i}]", origin) for i, v in enumerate(value)]
    if kind is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{dotted}[{i}]", origin) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise wrong()
        return tuple(
            _coerce(v, a, f"{dotted}[{i}]", origin) for i, (v, a) in enumerate(zip(value, args or [Any] * len(value)))
        )
    if kind in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise wrong()
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {
            _coerce(k, key_tp, dotted, origin): _coerce(v, val_tp, f"{dotted}.{k}", origin) for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (float, str)) and not isinstance(value, bool):
            number = _as_float(value)
            if number is not None and number.is_integer():
                return int(number)
        raise wrong()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _as_float(value) is not None:
            return _as_float(value)
        raise wrong()
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise wrong()
    raise ConfigError(f"config schema type {_type_name(tp)} of '{dotted}' is not supported")


def _as_float(value: float | str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
