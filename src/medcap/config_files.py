"""Settings from outside: a TOML file and `section.field=value` overrides.

    medcap --config medcap.toml --set index.hnsw_ef_search=512 --set retrieval.k=10 ...

The file has one table per section of `MedcapConfig` (`[index]`, `[generation]`, ...).
Overrides apply after the file, in order. Every value is checked against the field's
declared type (int, float, bool, str, a tuple, a closed choice, or None where the field
allows it) and then by the section's own `__post_init__`; a mistake is one line naming
the file or the `--set`, the field and what it expects.

    --set retrieval.recall_ks=1,5,10       tuples are comma-separated
    --set train.max_minutes=none           None where the field allows it
    --set generation.static_cache=true     true/false, yes/no, on/off, 1/0
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from medcap.config import DEFAULTS, MedcapConfig, field_types
from medcap.errors import InputError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


class _BadValue(ValueError):
    """A value that does not fit a field's type; the message says what was expected."""


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        inner = args[0] if args else str
        return "a comma-separated list of " + _describe(inner)
    if kind is type(None):
        return "none"
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
        kind, str(kind)
    )


def coerce(value: Any, kind: Any) -> Any:
    """`value` (text from `--set`, or a TOML value) as type `kind`; _BadValue if it won't fit."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and (value is None or str(value).strip().lower() in _NONE):
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option)
            except _BadValue:
                continue
        raise _BadValue(_describe(kind))
    if origin is Literal:
        if value in args:
            return value
        raise _BadValue(_describe(kind))
    if origin is tuple:
        items = (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )
        if not isinstance(items, list | tuple):
            raise _BadValue(_describe(kind))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in items)
        if len(items) != len(args):
            raise _BadValue(f"{len(args)} comma-separated values")
        return tuple(coerce(v, a) for v, a in zip(items, args, strict=True))
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE and not isinstance(value, int | float):
            return text in _TRUE
        raise _BadValue(_describe(kind))
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _BadValue(_describe(kind))
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _BadValue(_describe(kind))
    if kind is str:
        if isinstance(value, str):
            return value
        raise _BadValue(_describe(kind))
    raise _BadValue(f"a field of type {kind}")


def _sections() -> dict[str, type]:
    return {f.name: field_types(MedcapConfig)[f.name] for f in dataclasses.fields(MedcapConfig)}


def _field_type(section: str, name: str, where: str) -> Any:
    sections = _sections()
    if section not in sections:
        raise InputError(
            f"{where}: unknown config section {section!r}; valid: {', '.join(sections)}"
        )
    fields = field_types(sections[section])
    if name not in fields:
        raise InputError(
            f"{where}: {section} has no field {name!r}; valid: {', '.join(sorted(fields))}"
        )
    return fields[name]


def _apply(config: MedcapConfig, changes: Mapping[str, Mapping[str, Any]]) -> MedcapConfig:
    """`config` with each section's changed fields replaced (sections re-checked)."""
    replaced = {
        section: dataclasses.replace(getattr(config, section), **fields)
        for section, fields in changes.items()
        if fields
    }
    return dataclasses.replace(config, **replaced) if replaced else config


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.field=value` -> (section, field, typed value)."""
    where = f"--set {text}"
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise InputError(f"{where}: write it as section.field=value, e.g. retrieval.k=10")
    kind = _field_type(section, name, where)
    try:
        return section, name, coerce(raw, kind)
    except _BadValue as exc:
        raise InputError(f"{where}: {section}.{name} takes {exc}") from None


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The typed field values of a TOML config file, by section."""
    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist; pass an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path} is not valid TOML ({exc})") from None
    out: dict[str, dict[str, Any]] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise InputError(
                f"{path}: {section} = ... must be a table ([{section}]) of that section's fields"
            )
        for name, value in table.items():
            kind = _field_type(section, name, str(path))
            try:
                out.setdefault(section, {})[name] = coerce(value, kind)
            except _BadValue as exc:
                raise InputError(
                    f"{path}: [{section}] {name} = {value!r}: expected {exc}"
                ) from None
    return out


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: MedcapConfig = DEFAULTS,
) -> MedcapConfig:
    """`base` updated by the TOML file at `path`, then by each `section.field=value`.

    >>> load_config(None, ["index.hnsw_ef_search=512"]).index.hnsw_ef_search
    512
    """
    config = base
    if path is not None:
        try:
            config = _apply(config, read_config_file(path))
        except InputError as exc:
            where = str(Path(path).expanduser())
            raise InputError(
                str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            ) from None
    for text in overrides:
        section, name, value = parse_override(text)
        try:
            config = _apply(config, {section: {name: value}})
        except InputError as exc:
            raise InputError(f"--set {text}: {exc}") from None
    return config


def _format(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_format(v) for v in value)
    return str(value)


def overrides_of(config: MedcapConfig, base: MedcapConfig = DEFAULTS) -> list[str]:
    """The `section.field=value` settings that turn `base` into `config` (for a subprocess)."""
    out = []
    for section in _sections():
        ours, theirs = getattr(config, section), getattr(base, section)
        for f in dataclasses.fields(ours):
            value = getattr(ours, f.name)
            if value != getattr(theirs, f.name):
                out.append(f"{section}.{f.name}={_format(value)}")
    return out
