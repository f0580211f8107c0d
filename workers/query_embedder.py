"""The serve worker's query embedder: ONNX Runtime or torch (``STREAMREC_SERVE_EMBED_BACKEND``).

``auto`` takes ONNX Runtime when it is installed, the model is a local Transformer →
mean-pooling one and the device is the CPU; if exporting or loading the graph fails
it says why in the log and falls back to torch. ``onnx`` insists (a failure stops the
worker with the reason); ``torch`` never tries ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from recsys.embedding import Embedder, SentenceTransformerEmbedder, limit_threads
from recsys.embedding_onnx import OnnxEmbedder, onnx_supported
from recsys.exceptions import ConfigurationError
from workers.model_load import load_model

__all__ = ["load_query_embedder", "query_embedder"]

log = logging.getLogger(__name__)


def _torch(settings: Any) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
    )


def query_embedder(settings: Any) -> Embedder:
    """The embedder the settings ask for (not loaded yet).

    Raises:
        ConfigurationError: ``serve_embed_backend=onnx`` and ONNX Runtime cannot run it.
    """
    backend = settings.serve_embed_backend
    if backend == "torch":
        return _torch(settings)
    why = (
        onnx_supported(settings.embedding_model)
        if settings.embedding_device == "cpu"
        else f"device {settings.embedding_device} (ONNX Runtime runs on the CPU here)"
    )
    if why is None:
        return OnnxEmbedder(settings.embedding_model, threads=settings.serve_embed_threads)
    if backend == "onnx":
        raise ConfigurationError(f"serve_embed_backend=onnx: {why}")
    log.info("serve: query embedding on torch (ONNX Runtime not used: %s)", why)
    return _torch(settings)


async def load_query_embedder(settings: Any, stop: asyncio.Event) -> Embedder | None:
    """:func:`query_embedder`, loaded (exported first if need be), torch capped at
    ``serve_embed_threads``; None if ``stop`` came first."""
    embedder = query_embedder(settings)
    try:
        if not await load_model(embedder, stop, worker="serve"):
            return None
    except ConfigurationError as exc:
        if not isinstance(embedder, OnnxEmbedder) or settings.serve_embed_backend == "onnx":
            raise
        log.warning("serve: ONNX Runtime not used (%s); query embedding on torch", exc)
        embedder = _torch(settings)
        if not await load_model(embedder, stop, worker="serve"):
            return None
    if isinstance(embedder, SentenceTransformerEmbedder):
        await asyncio.get_running_loop().run_in_executor(
            None, limit_threads, settings.serve_embed_threads
        )
    elif isinstance(embedder, OnnxEmbedder):
        log.info(
            "serve: query embedding on ONNX Runtime (%s%s)",
            embedder.graph_path,
            ", exported now" if embedder.exported else "",
        )
    return embedder
