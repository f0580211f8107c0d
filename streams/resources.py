"""Where the project's data folders live, in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SCHEMAS_DIR"]

_CHECKOUT = Path(__file__).resolve().parent.parent / "schemas"
_BUNDLED = Path(__file__).resolve().parent / "_bundled" / "schemas"

#: The folder of ``.avsc`` files: the checkout's ``schemas/`` or the copy bundled in a wheel.
SCHEMAS_DIR = _CHECKOUT if _CHECKOUT.is_dir() else _BUNDLED
