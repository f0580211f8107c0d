"""Start-up check that every record class matches its ``.avsc`` file.

``schemas/`` is the source of truth. This walks each Avro record and the pydantic
model beside it and reports every difference: missing or extra fields, a type that
maps differently, optionality, enum symbols, nested records. Workers run it before
they consume anything, and a unit test runs it on every commit.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from recsys.records import Record
from streams.exceptions import SchemaDriftError
from streams.registry import Schema, load_avsc

__all__ = ["check_all", "check_model", "drift"]

_PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "double": float,
    "float": float,
    "boolean": bool,
    "bytes": bytes,
}


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _optional_inner(tp: Any) -> tuple[bool, Any]:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, _strip_annotated(args[0])
    return False, tp


def _compare(path: str, avro: Any, tp: Any, problems: list[str]) -> None:
    """Append a line to ``problems`` for every way ``tp`` fails to mirror ``avro``."""
    tp = _strip_annotated(tp)
    if isinstance(avro, list):  # union
        branches = [b for b in avro if b != "null"]
        nullable = "null" in avro
        is_opt, inner = _optional_inner(tp)
        if nullable != is_opt:
            problems.append(f"{path}: avro nullable={nullable}, model optional={is_opt}")
        if len(branches) != 1:
            problems.append(f"{path}: only [null, T] unions are supported, got {avro}")
            return
        _compare(path, branches[0], inner, problems)
        return
    is_opt, _ = _optional_inner(tp)
    if is_opt:
        problems.append(f"{path}: model is optional but avro type {avro!r} is not nullable")
        return
    if isinstance(avro, str):
        expected = _PRIMITIVES.get(avro)
        if expected is None:
            problems.append(f"{path}: unresolved named type {avro!r}")
        elif tp is not expected:
            problems.append(f"{path}: avro {avro} needs {expected.__name__}, model has {tp!r}")
        return
    kind = avro.get("type")
    logical = avro.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros"):
        if not (tp is AwareDatetime or (isinstance(tp, type) and issubclass(tp, datetime))):
            problems.append(f"{path}: avro {logical} needs datetime, model has {tp!r}")
        return
    if kind == "enum":
        if not (isinstance(tp, type) and issubclass(tp, enum.Enum)):
            problems.append(f"{path}: avro enum needs an Enum class, model has {tp!r}")
            return
        symbols = list(avro["symbols"])
        values = [m.value for m in tp]
        if symbols != values:
            problems.append(f"{path}: enum symbols {symbols} != model values {values}")
        return
    if kind == "array":
        if typing.get_origin(tp) is not list:
            problems.append(f"{path}: avro array needs list[...], model has {tp!r}")
            return
        _compare(f"{path}[]", avro["items"], typing.get_args(tp)[0], problems)
        return
    if kind == "map":
        if typing.get_origin(tp) is not dict or typing.get_args(tp)[0] is not str:
            problems.append(f"{path}: avro map needs dict[str, ...], model has {tp!r}")
            return
        _compare(f"{path}{{}}", avro["values"], typing.get_args(tp)[1], problems)
        return
    if kind == "record":
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
            problems.append(f"{path}: avro record needs a model, has {tp!r}")
            return
        _compare_record(path, avro, tp, problems)
        return
    if isinstance(kind, str | list | dict):
        _compare(path, kind, tp, problems)
        return
    problems.append(f"{path}: unsupported avro type {avro!r}")  # pragma: no cover


def _compare_record(path: str, avro: Schema, model: type[BaseModel], problems: list[str]) -> None:
    hints = typing.get_type_hints(model, include_extras=True)
    avro_fields = {f["name"]: f for f in avro["fields"]}
    model_fields: dict[str, FieldInfo] = model.model_fields
    for name in sorted(set(avro_fields) - set(model_fields)):
        problems.append(f"{path}.{name}: in the schema, missing from {model.__name__}")
    for name in sorted(set(model_fields) - set(avro_fields)):
        problems.append(f"{path}.{name}: in {model.__name__}, missing from the schema")
    for name, field in avro_fields.items():
        if name not in model_fields:
            continue
        if not field.get("doc"):
            problems.append(f"{path}.{name}: schema field has no doc")
        _compare(f"{path}.{name}", field["type"], hints[name], problems)
        has_avro_default = "default" in field
        if has_avro_default and model_fields[name].is_required():
            problems.append(f"{path}.{name}: schema has a default, model field is required")


def drift(model: type[Record]) -> list[str]:
    """Every difference between ``model`` and its ``.avsc`` (empty when they agree)."""
    schema = load_avsc(model.avro_name)
    problems: list[str] = []
    name = schema["name"]
    fullname = name if "." in name else f"{schema.get('namespace', '')}.{name}"
    if fullname != model.avro_name:
        problems.append(f"{model.avro_name}: schema file names {schema['name']}")
    if not schema.get("doc"):
        problems.append(f"{model.avro_name}: schema has no doc")
    _compare_record(model.avro_name, schema, model, problems)
    return problems


def check_model(model: type[Record]) -> None:
    """Raise :class:`SchemaDriftError` listing every difference, if any."""
    problems = drift(model)
    if problems:
        raise SchemaDriftError(
            f"{model.__name__} has drifted from schemas/{model.avro_name}.avsc:\n  "
            + "\n  ".join(problems)
        )


def check_all(models: typing.Iterable[type[Record]]) -> None:
    """Check several models; one error listing all drift."""
    problems = [p for m in models for p in drift(m)]
    if problems:
        raise SchemaDriftError("record classes drifted from schemas/:\n  " + "\n  ".join(problems))
