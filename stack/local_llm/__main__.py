"""Run the local LLM server: ``python -m stack.local_llm --port 8091``.

Loads the model first and only then listens, so "the port answers ``/v1/models``" means
ready. SIGTERM or SIGINT stop it cleanly (the running generation is cancelled).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the model, serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m stack.local_llm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--model-path", type=Path, default=None, help="a GGUF file")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--max-queue", type=int, default=16, help="requests waiting at most")
    parser.add_argument("--max-tokens", type=int, default=512, help="default max_tokens")
    parser.add_argument("--repeat-penalty", type=float, default=1.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from aiohttp import web

    from stack.local_llm.engine import LocalModel
    from stack.local_llm.exceptions import ModelNotInstalled
    from stack.local_llm.model_file import resolve_model_file
    from stack.local_llm.server import LlmService, create_app

    try:
        model_file = resolve_model_file(args.model_path)
    except ModelNotInstalled as exc:
        logging.getLogger("stack.local_llm").error("%s", exc)
        return 2
    model = LocalModel(model_file, threads=args.threads)
    model.load()
    service = LlmService(
        model,
        max_queue=args.max_queue,
        default_max_tokens=args.max_tokens,
        repeat_penalty=args.repeat_penalty,
    )
    logging.getLogger("stack.local_llm").info(
        "serving %s (sha256 %s) on http://%s:%d/v1",
        model.name,
        model_file.sha256,
        args.host,
        args.port,
    )
    web.run_app(
        create_app(service),
        host=args.host,
        port=args.port,
        print=None,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=5.0,
    )
    # a generation thread still inside a long forward pass must not hold the exit up
    # (the launcher's SIGKILL would come 10 s later; a dead parent sends no SIGKILL)
    logging.getLogger("stack.local_llm").info("stopped")
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
