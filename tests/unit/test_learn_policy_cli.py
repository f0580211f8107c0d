"""`streamrec learn-policy`: a bad option is one clear line and exit 2, before any broker
or database is touched; the report tables render from a report."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.app import app
from cli.policy_cmds import print_policy_report
from recsys.policy.learn import LearnConfig, learn
from recsys.policy.model import BUCKETS
from recsys.serving.config import ServingConfig
from recsys.serving.default_policy import default_policy
from testkit.policy_world import PolicyWorld


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--estimator", "ips"], "--estimator must be snips or dr"),
        (["--holdout", "1"], "--holdout must be between 0 and 1"),
        (["--source", "s3"], "--source must be kafka or archive"),
        (["--epsilon", "2"], "--epsilon must be in [0, 1]"),
        (["--since", "yesterday"], "--since: cannot read"),
    ],
)
def test_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["learn-policy", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_terminal_report() -> None:
    world = PolicyWorld(seed=2)
    logging = default_policy(ServingConfig(epsilon=0.0))
    result = learn(world.simulate(logging, 600, 2), logging, cfg=LearnConfig(resamples=50))
    report = result.as_json() | {
        "examples": 6000,
        "reward": "any",
        "current_source": "settings",
        "activated": None,
    }
    out = io.StringIO()
    print_policy_report(report, Console(file=out, width=200))
    text = out.getvalue()
    assert "policies on the holdout" in text and "learned" in text
    assert "cannot be estimated" in text and "ε = 0" in text
    assert "kept the current policy" in text
    assert {b.value for b in BUCKETS} <= set(report["estimates"]["current"])
