"""`streamrec demo`: the whole component on this machine with a synthetic workload."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import BrokerPortOpt, console, load, transient_steps
from recsys.exceptions import ConfigurationError

__all__ = ["demo"]


def demo(
    items: Annotated[
        int | None, typer.Option(help="Catalog size (400; 24 with --llm local).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Number of synthetic users (250; 60 with --llm local).")
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(help="Recommendation requests to send (200; 15 with --llm local)."),
    ] = None,
    llm: Annotated[
        str,
        typer.Option(
            help="simulated (fast, the default) | local (a real 135M model on this CPU: "
            "slow, smaller workload) | endpoint | none"
        ),
    ] = "simulated",
    broker_port: BrokerPortOpt = None,
) -> None:
    """Run the whole component on this machine with a synthetic workload and report."""
    try:
        from demo.run import DemoOptions, run_demo
    except ImportError as exc:  # testkit (simulated LLM, poison messages) is dev-only
        raise ConfigurationError(
            f"the demo needs a checkout's dev install (`make demo` does it): {exc}"
        ) from exc

    settings = load(broker_port=broker_port)
    options = DemoOptions.for_llm(llm, items=items, users=users, requests=requests)
    run_demo(settings, options, console, steps=transient_steps)
