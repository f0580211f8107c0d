"""Start the local LLM server as a child process, like the embedded broker and Postgres.

:class:`EmbeddedLlm` picks the interpreter of this environment, runs
``python -m stack.local_llm`` on a port, writes its log to ``<home>/logs/``, waits
until ``GET /v1/models`` answers (the server listens only once the model is loaded),
and stops it with SIGTERM. The child gets ``PR_SET_PDEATHSIG`` so it never outlives
its parent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from stack.embedded import die_with_parent, port_is_free, stop_process
from stack.local_llm.exceptions import LocalLlmError
from stack.local_llm.model_file import ModelFile, resolve_model_file
from streams.exceptions import PortInUse

__all__ = ["EmbeddedLlm"]

log = logging.getLogger(__name__)


class EmbeddedLlm:
    """The local OpenAI-compatible LLM server on ``host:port``."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8091,
        threads: int = 2,
        max_queue: int = 16,
        repeat_penalty: float = 1.0,
        log_dir: Path | None = None,
    ) -> None:
        self.model_file: ModelFile = resolve_model_file(model_path)
        self.host = host
        self.port = port
        self.threads = threads
        self.max_queue = max_queue
        self.repeat_penalty = repeat_penalty
        self.log_dir = log_dir
        self.card: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``…/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The model name the server reports."""
        return self.model_file.name

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        """The server's log file (None: no log directory given)."""
        return self.log_dir / f"local-llm-{self.port}.log" if self.log_dir else None

    def start(self, timeout_s: float = 600.0) -> str:
        """Start the server, wait until it answers, return the base URL.

        Raises:
            PortInUse: the port is taken.
            LocalLlmError: the server exited or did not answer in ``timeout_s``.
        """
        if self._proc is not None:
            return self.base_url
        if not port_is_free(self.host, self.port):
            raise PortInUse(
                f"port {self.port} on {self.host} is already in use, so the local LLM cannot "
                "start; choose another with STREAMREC_LLM_LOCAL_PORT"
            )
        args = [
            sys.executable,
            "-m",
            "stack.local_llm",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--model-path",
            str(self.model_file.path),
            "--threads",
            str(self.threads),
            "--max-queue",
            str(self.max_queue),
            "--repeat-penalty",
            str(self.repeat_penalty),
        ]
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        try:
            # OpenMP threads that sleep instead of spinning: on a shared machine a spinning
            # thread burns the core its peer needs (2 threads ran 5x slower than 1 at load 15)
            env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
            self._proc = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # SIGKILL, not SIGTERM: a server loading its model or decoding does not
                # reach its SIGTERM handler soon (it outlived a killed parent twice), and
                # it holds nothing durable
                preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._wait_ready(timeout_s)
        log.info(
            "local LLM %s on %s (pid %d, %s)",
            self.model,
            self.base_url,
            self._proc.pid,
            f"log {self.log_path}" if self.log_path else "no log",
        )
        return self.base_url

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        started = time.monotonic()
        deadline = started + timeout_s
        next_note = started + 30
        while time.monotonic() < deadline:
            if time.monotonic() >= next_note:  # ≈ 17 s on a quiet machine, minutes on a busy one
                log.info(
                    "the local LLM is still loading its model (%.0fs so far)",
                    time.monotonic() - started,
                )
                next_note += 30
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise LocalLlmError(
                    f"the local LLM server exited with code {code} at start-up"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=1.0) as r:
                    body = json.loads(r.read())
                self.card = body["data"][0]
                return
            except (OSError, ValueError, KeyError, IndexError):
                time.sleep(0.25)
        self.stop()
        raise LocalLlmError(
            f"the local LLM server did not answer on {self.base_url} within {timeout_s:.0f}s"
            + (f"; see {self.log_path}" if self.log_path else "")
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, signal.SIGTERM, timeout_s, "the local LLM")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
