"""Runner: ``python -m benchmarks NAME [args...]`` runs ``benchmarks/NAME.py``.

``python -m benchmarks`` with no name lists the scripts.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    scripts = sorted(
        p.stem
        for p in HERE.glob("*.py")
        if not p.stem.startswith("_") and p.stem not in ("common", "movielens_world")
    )
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: python -m benchmarks NAME [args...]\n\nbenchmarks: " + ", ".join(scripts))
        return
    name = sys.argv[1]
    if name not in scripts:
        sys.exit(f"unknown benchmark {name!r}; known: {', '.join(scripts)}")
    sys.argv = [str(HERE / f"{name}.py"), *sys.argv[2:]]
    runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")


if __name__ == "__main__":
    main()
