"""Backward compatibility of schemas: can the new reader read what the old writer wrote?

Checked with real Avro schema resolution: data generated from the writer schema is
encoded and decoded through ``fastavro`` with the reader schema, so every rule of the
Avro specification applies (a new field needs a default, a removed enum symbol needs
a reader default, only promotions like int→long are allowed).
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from streams.exceptions import SchemaCompatibilityError
from streams.registry import Schema, load_avsc
from streams.resources import SCHEMAS_DIR

__all__ = ["assert_backward_compatible", "backward_problems", "committed_versions"]


def backward_problems(reader: Schema, writer: Schema, samples: int = 200) -> list[str]:
    """Reasons why ``reader`` cannot read data written with ``writer`` (empty if it can)."""
    try:
        parsed_writer = parse_schema(writer, _write_hint=False)
        parsed_reader = parse_schema(reader, _write_hint=False)
    except Exception as exc:
        return [f"schema does not parse: {exc}"]
    problems: set[str] = set()
    for datum in generate_many(parsed_writer, samples):
        buf = io.BytesIO()
        schemaless_writer(buf, parsed_writer, datum)
        buf.seek(0)
        try:
            schemaless_reader(buf, parsed_writer, parsed_reader)
        except Exception as exc:
            problems.add(f"{type(exc).__name__}: {exc}")
    return sorted(problems)


def assert_backward_compatible(reader: Schema, writer: Schema, name: str = "schema") -> None:
    """Raise :class:`SchemaCompatibilityError` if ``reader`` cannot read ``writer`` data."""
    problems = backward_problems(reader, writer)
    if problems:
        raise SchemaCompatibilityError(
            f"{name} is not backward compatible with its previous version:\n  "
            + "\n  ".join(problems)
        )


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    ).stdout


def committed_versions(fullname: str, directory: Path = SCHEMAS_DIR) -> Iterator[tuple[str, Any]]:
    """Every distinct committed version of a schema: ``(label, expanded schema)``.

    Versions come from ``schemas/history/<fullname>/*.avsc`` (frozen copies) and from
    the git history of the ``.avsc`` file and of the shared records it references.
    Versions that are not valid JSON are skipped (they never were a usable contract).
    """
    seen: set[str] = set()
    history = directory / "history" / fullname
    if history.is_dir():
        for path in sorted(history.glob("*.avsc")):
            text = path.read_text()
            if text not in seen:
                seen.add(text)
                yield f"history/{path.name}", json.loads(text)
    try:
        top = Path(_git("rev-parse", "--show-toplevel", cwd=directory).strip())
        rel = (directory / f"{fullname}.avsc").resolve().relative_to(top)
        commits = _git("log", "--format=%H", "--", str(rel), cwd=top).split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    for commit in commits:
        # Rebuild the whole schemas/ folder at that commit so references resolve.
        listing = _git("ls-tree", "--name-only", commit, f"{rel.parent}/", cwd=top).split()
        with tempfile.TemporaryDirectory() as tmp:
            for entry in listing:
                if entry.endswith(".avsc"):
                    content = _git("show", f"{commit}:{entry}", cwd=top)
                    (Path(tmp) / Path(entry).name).write_text(content)
            try:
                schema = load_avsc(fullname, Path(tmp))
            except Exception:
                continue
        text = json.dumps(schema, sort_keys=True)
        if text not in seen:
            seen.add(text)
            yield f"git:{commit[:10]}", schema
