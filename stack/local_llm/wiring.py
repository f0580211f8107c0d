"""From settings to a running local LLM, and the settings that point the workers at it.

``--llm local`` means: start :class:`~stack.local_llm.launcher.EmbeddedLlm` (unless an
endpoint is already configured), then hand the workers its URL and model name, plus
defaults that suit one small CPU model — applied only to settings still at their
default:

* ``llm_timeout_s`` = ``llm_local_timeout_s`` (60 s): one call takes seconds here;
* ``llm_max_concurrency`` = 1 per process: one model answers one request at a time,
  so calls wait in the client, against their own deadline, not in a server queue
  against the call's timeout;
* ``llm_temperature`` = 0: greedy decoding, the best a 135M model does;
* ``enrich_max_batch`` = 16 (:data:`LOCAL_ENRICH_MAX_BATCH`): a batch is stored when its
  last item is enriched; at seconds per item, the default 2000 would keep a catalog
  invisible for hours and outlast any deadline;
* ``enrich_deadline_s`` ≥ 900 s: the enrichment deadline covers a whole batch, and a
  batch of 16 items takes minutes at a few seconds per item on a busy machine.

The prompt family follows ``llm_prompts`` (auto → compact with the local LLM).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from stack.local_llm.exceptions import ModelNotInstalled
from stack.local_llm.launcher import EmbeddedLlm
from stack.local_llm.model_file import DEFAULT_MODEL_SHA256, MODEL_LICENCE, resolve_model_file
from streams.settings import Settings
from workers.capabilities import Capability

__all__ = ["embedded_llm", "local_llm_capability", "local_llm_overrides"]

#: Enrichment deadline (per batch) with the local LLM, unless set explicitly.
LOCAL_ENRICH_DEADLINE_S = 900.0
#: Catalog changes per enrich batch with the local LLM, unless set explicitly.
LOCAL_ENRICH_MAX_BATCH = 16


def embedded_llm(settings: Settings) -> EmbeddedLlm:
    """The local LLM server the settings describe (not started).

    Raises:
        ModelNotInstalled: the model file is missing (with how to install it).
    """
    return EmbeddedLlm(
        settings.llm_local_model_path,
        host="127.0.0.1",
        port=settings.llm_local_port,
        threads=settings.llm_local_threads,
        max_queue=settings.llm_local_max_queue,
        log_dir=settings.home / "logs",
    )


def local_llm_overrides(settings: Settings, llm: EmbeddedLlm) -> dict[str, Any]:
    """Setting changes that make every LLM client use ``llm`` (see the module doc)."""
    fields = type(settings).model_fields
    changes: dict[str, Any] = {
        "llm_local": True,
        "llm_base_url": llm.base_url,
        "llm_model": llm.model,
    }
    defaults: dict[str, Any] = {
        "llm_timeout_s": settings.llm_local_timeout_s,
        "llm_max_concurrency": 1,
        "llm_temperature": 0.0,
        "enrich_deadline_s": max(settings.enrich_deadline_s, LOCAL_ENRICH_DEADLINE_S),
        "enrich_max_batch": LOCAL_ENRICH_MAX_BATCH,
    }
    # "not set explicitly" = still at its default (copies made by with_overrides mark
    # every field as set, so model_fields_set cannot tell)
    changes.update({k: v for k, v in defaults.items() if getattr(settings, k) == fields[k].default})
    return changes


def _answers(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status) < 400
    except (OSError, ValueError):
        return False


def local_llm_capability(settings: Settings, timeout_s: float = 3.0) -> Capability:
    """``doctor``'s line for the local LLM: model name, file sha256, licence, running or not."""
    try:
        model = resolve_model_file(settings.llm_local_model_path)
    except ModelNotInstalled as exc:
        return Capability("local LLM", "error" if settings.llm_local else "off", str(exc))
    digest = model.sha256
    pinned = digest == DEFAULT_MODEL_SHA256
    about = (
        f"{model.name}, sha256 {digest} ({'the pinned file' if pinned else 'not the pinned file'}"
        f"), {model.size_mb:.0f} MB, licence {MODEL_LICENCE if pinned else 'see the file'}"
    )
    port = settings.llm_local_port
    if _answers(f"http://127.0.0.1:{port}/v1/models", timeout_s):
        return Capability("local LLM", "on", f"{about}; serving on port {port}")
    hint = "" if settings.llm_local else " (start it with `streamrec up --llm local`)"
    return Capability("local LLM", "off", f"{about}; not running{hint}")
