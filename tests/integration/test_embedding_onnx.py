"""The query embedding on ONNX Runtime gives the torch model's vectors (the catalog's
space), exports once into its cache, and the serve worker's backend setting picks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.embedding import SentenceTransformerEmbedder
from recsys.embedding_onnx import MIN_AGREEMENT, OnnxEmbedder, onnx_supported
from recsys.exceptions import ConfigurationError
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams.settings import Settings
from workers.query_embedder import query_embedder

pytestmark = pytest.mark.skipif(
    onnx_supported() is not None, reason=f"ONNX Runtime unavailable: {onnx_supported()}"
)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    model = OnnxEmbedder(cache_dir=tmp_path_factory.mktemp("onnx"))
    assert model.dim == 384
    assert model.exported and model.graph_path.is_file()
    return model


def _texts() -> list[str]:
    world = SyntheticWorkload(WorkloadConfig(n_items=200, n_users=200, seed=11))
    queries = [
        r.query for r in world.requests(1500, new_user_share=0.0, query_share=1.0) if r.query
    ]
    catalog = [f"{c.title}. {' '.join(c.categories)}. {c.description}" for c in world.catalog()]
    odd = ["", " ", "ünïcödé — ?! 123", "x" * 3000, "word " * 400, "Ein Film über das Meer."]
    return list(dict.fromkeys(queries))[:150] + catalog[:150] + odd


def test_onnx_vectors_agree_with_torch(embedder: Any, onnx_model: OnnxEmbedder) -> None:
    texts = _texts()
    assert len(texts) >= 300
    reference = embedder.embed(texts)
    single = np.stack([onnx_model.embed([t])[0] for t in texts])  # as serving asks
    batched = np.concatenate(
        [onnx_model.embed(texts[i : i + 16]) for i in range(0, len(texts), 16)]
    )
    for vectors in (single, batched):
        assert vectors.shape == reference.shape and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosine = (reference * vectors).sum(axis=1)
        assert cosine.min() >= MIN_AGREEMENT, texts[int(cosine.argmin())][:80]
    # the neighbours in the catalog's space are the torch model's
    catalog = reference[150:300]
    for got, want in ((single, reference),):
        top_got = np.argsort(-(got[:150] @ catalog.T), axis=1)[:, :10]
        top_want = np.argsort(-(want[:150] @ catalog.T), axis=1)[:, :10]
        assert (top_got == top_want).mean() >= 0.99


def test_a_second_process_loads_the_cached_graph(onnx_model: OnnxEmbedder) -> None:
    again = OnnxEmbedder(cache_dir=onnx_model.cache_dir)
    assert again.graph_path == onnx_model.graph_path
    assert again.dim == 384 and not again.exported
    text = ["a tense thriller with a heist"]
    np.testing.assert_array_equal(again.embed(text), onnx_model.embed(text))
    assert again.embed([]).shape == (0, 384)


def test_backend_setting(tmp_path: Path) -> None:
    assert isinstance(query_embedder(Settings(serve_embed_backend="auto")), OnnxEmbedder)
    assert isinstance(query_embedder(Settings(serve_embed_backend="onnx")), OnnxEmbedder)
    torch = query_embedder(Settings(serve_embed_backend="torch"))
    assert isinstance(torch, SentenceTransformerEmbedder)
    # a device ONNX Runtime does not run here: auto falls back, onnx refuses
    cuda = {"embedding_device": "cuda"}
    assert isinstance(
        query_embedder(Settings(serve_embed_backend="auto", **cuda)), SentenceTransformerEmbedder
    )
    with pytest.raises(ConfigurationError, match="device cuda"):
        query_embedder(Settings(serve_embed_backend="onnx", **cuda))
