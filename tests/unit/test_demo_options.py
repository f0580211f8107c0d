"""`make demo` keeps its fast default; `demo --llm local` runs a smaller workload with
request deadlines a CPU model can meet."""

from __future__ import annotations

import inspect

from cli.demo_cmd import demo
from demo.run import DemoOptions


def test_the_default_demo_is_the_fast_simulated_one() -> None:
    assert inspect.signature(demo).parameters["llm"].default == "simulated"
    options = DemoOptions.for_llm("simulated")
    assert options == DemoOptions()
    assert (options.items, options.users, options.requests) == (400, 250, 200)
    assert options.deadline_ms is None and options.rate_per_s == 20.0


def test_the_local_model_demo_is_smaller_with_deadlines_it_can_meet() -> None:
    options = DemoOptions.for_llm("local")
    assert (options.items, options.users, options.requests) == (24, 60, 15)
    assert options.deadline_ms == 30_000 and options.rate_per_s == 1.0
    assert DemoOptions.for_llm("local", requests=5).requests == 5
    assert DemoOptions.for_llm("none", items=10).items == 10
