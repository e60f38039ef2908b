"""JSON reports as dataclasses, checked on the way in: a stored file with a missing, unknown or mistyped field
is refused with one line naming the file and the field (`models.checkerboard-hannet-20x30.rows`).

A report class is a plain dataclass whose field annotations say what the JSON holds: str, int, float (a
JSON integer is a number too), bool, None in a union for an optional value, list[X], dict[str, X], and
nested report classes; a field made with `absent()` may be left out of the file. `to_json` writes the
fields in their declared order, so a report read and written again gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import HanzooError
from .files import written_atomically

__all__ = ["absent", "from_json", "to_json", "read_json", "write_json"]

T = TypeVar("T")


def absent() -> Any:
    """A field a report may leave out (not write at all) rather than write as null: a measurement that
    failed has no figures, only its error."""
    return dataclasses.field(default=None, metadata={"absent": True})


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object"
    )


def _expected(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if kind is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(k) for k in typing.get_args(kind))
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        return "an object"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        kind, "a value"
    )


def _convert(kind: Any, value: Any, where: str, path: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _convert(option, value, where, path)
            except HanzooError:
                continue
        raise HanzooError(f"{where}: {path} must be {_expected(kind)}, got {_json_type(value)}")
    if kind is type(None):
        if value is None:
            return None
    elif origin is list and isinstance(value, list):
        (item,) = typing.get_args(kind) or (Any,)
        return [_convert(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict and isinstance(value, dict):
        _, item = typing.get_args(kind) or (str, Any)
        return {k: _convert(item, v, where, f"{path}.{k}") for k, v in value.items()}
    elif isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, dict):
        return _build(kind, value, where, path)
    elif kind is bool and isinstance(value, bool):
        return value
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # kept as written (an int stays an int), so the file reads back byte for byte
    elif kind is str and isinstance(value, str):
        return value
    raise HanzooError(f"{where}: {path or 'the file'} must be {_expected(kind)}, got {_json_type(value)}")


def _build(cls: type[T], data: dict, where: str, path: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise HanzooError(f"{where}: {_join(path, unknown[0])} is not a field of {cls.__name__}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise HanzooError(f"{where}: {_join(path, name)} is missing")
            continue
        values[name] = _convert(hints[name], data[name], where, _join(path, name))
    return cls(**values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def from_json(cls: type[T], data: Any, where: str, path: str = "") -> T:
    """`data` (parsed JSON) as a `cls`, or a HanzooError naming `where` and the first bad field; `path` is
    where `data` sits in its file, when it is not the whole of it (`parity` in a manifest)."""
    if not isinstance(data, dict):
        where = f"{where}: {path}" if path else where
        raise HanzooError(f"{where} must hold a JSON object, got {_json_type(data)}")
    return _build(cls, data, where, path)


def to_json(report: Any) -> Any:
    """A report as JSON-ready values, fields in their declared order."""
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return {
            f.name: to_json(getattr(report, f.name))
            for f in dataclasses.fields(report)
            if not (f.metadata.get("absent") and getattr(report, f.name) is None)
        }
    if isinstance(report, dict):
        return {k: to_json(v) for k, v in report.items()}
    if isinstance(report, (list, tuple)):
        return [to_json(v) for v in report]
    return report


def read_json(cls: type[T], path: Path) -> T:
    """The report stored at `path`: one line naming the file if it is missing, not JSON, or off its shape."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HanzooError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HanzooError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise HanzooError(f"cannot read {path}: {e.strerror}") from None
    return from_json(cls, data, str(path))


def write_json(report: Any, path: Path, indent: int = 1) -> None:
    """Write a report (all at once: a reader never sees half of it)."""
    with written_atomically(Path(path)) as tmp:
        tmp.write_text(json.dumps(to_json(report), indent=indent) + "\n")
