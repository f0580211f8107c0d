"""One-shot use cases (train, replay, evaluate, A/B, counterfactuals).

Each job takes settings and plain options, reports progress through a callback and
returns a result; none imports Typer or Rich, so the CLI, the demo, tests and
benchmarks call the same code.
"""
