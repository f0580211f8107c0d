"""`streamrec up --llm local`: the stack starts the local LLM like the broker and
Postgres — its own process on its port, ready when it answers, a log under the home,
the workers' settings pointed at it, `doctor`'s line, and nothing left after stop."""

from __future__ import annotations

import os

import pytest

from stack.embedded import free_port, port_is_free
from stack.local_llm.model_file import DEFAULT_MODEL_SHA256
from stack.local_llm.wiring import local_llm_capability
from stack.stack import Stack
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_stack_starts_serves_and_stops_the_local_llm(settings: Settings) -> None:
    port = free_port()
    requested = settings.with_overrides(llm_local=True, llm_local_port=port)
    assert local_llm_capability(requested).status == "off"  # installed, not running
    with Stack(requested) as stack:
        s = stack.settings
        assert stack.llm is not None and stack.llm.pid is not None
        pid = stack.llm.pid
        assert s.llm_base_url == f"http://127.0.0.1:{port}/v1"
        assert s.llm_model == "SmolLM2-135M-Instruct.Q4_1"
        assert s.prompt_style == "compact"  # auto: compact prompts for the small model
        assert s.llm_timeout_s == s.llm_local_timeout_s  # local-model defaults applied
        capability = local_llm_capability(s)
        assert capability.status == "on", capability.detail
        assert DEFAULT_MODEL_SHA256 in capability.detail and f"port {port}" in capability.detail
        log_file = s.home / "logs" / f"local-llm-{port}.log"
        assert log_file.exists() and "serving SmolLM2" in log_file.read_text()
    # stop waits for the process (SIGTERM, then SIGKILL): it is gone, its port free
    assert not _alive(pid)
    assert port_is_free("127.0.0.1", port)
    assert local_llm_capability(requested).status == "off"
