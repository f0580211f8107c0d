"""`streamrec demo` as a newcomer runs it (a small workload): it ends with real responses,
item by item, and with the commands that evaluate what it archived — which work."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack.embedded import free_port

# the demo takes about a minute on an idle 2-core machine; far longer when it is shared
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
#: The console script of this environment, as `make demo` runs it.
STREAMREC = str(Path(sys.executable).parent / "streamrec")
HEADER = re.compile(r"^(\d)\. (.+?) — user (\S+) · warmth (COLD|WARMING|WARM) · route (\w+)")
ITEM = re.compile(r"^\s+(\d+)\. (.+) — (.*) · (\w+)(?: \(ranker #\d+\))?$")


@dataclass
class Shown:
    """One response of the demo's closing section, as printed."""

    title: str
    warmth: str
    route: str
    llm: str = ""
    items: list[tuple[str, str, str]] = field(default_factory=list)  # title, why, evidence


@dataclass(frozen=True)
class DemoRun:
    home: Path
    env: dict[str, str]
    stdout: str
    stderr: str


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(STREAMREC_HOME=str(home), STREAMREC_SESSION_TIMEOUT_MS="6000")
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    home = tmp_path_factory.mktemp("demo") / "home"
    env = _env(home)
    size = ["--items", "60", "--users", "40", "--requests", "30"]
    result = subprocess.run(
        [STREAMREC, "demo", *size, "--broker-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=420,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return DemoRun(home, env, result.stdout, result.stderr)


def shown_responses(stdout: str) -> list[Shown]:
    """The responses of the closing section, parsed back from the output."""
    out: list[Shown] = []
    lines = stdout.splitlines()
    for n, line in enumerate(lines):
        header = HEADER.match(line)
        if header:
            out.append(Shown(header[2], header[4], header[5]))
            continue
        if not out:
            continue
        if line.startswith("   LLM: "):
            out[-1].llm = line.strip()
        item = ITEM.match(line)
        if item and n + 2 < len(lines):
            why = lines[n + 1].strip()
            evidence = lines[n + 2].strip()
            out[-1].items.append((item[2], why, evidence))
    return out


def next_commands(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next: "))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def test_the_demo_ends_with_real_responses_and_what_to_run_next(demo_run: DemoRun) -> None:
    shown = shown_responses(demo_run.stdout)
    assert len(shown) >= 3, demo_run.stdout[-4000:]
    titles = {s.title for s in shown}
    assert {"a warm user, no query", "a cold user with a query"} <= titles
    assert titles & {"the LLM reranked", "the LLM fell back to the ranker's order"}
    for s in shown:
        assert s.items, f"{s.title}: no items printed"
        assert s.llm.startswith("LLM: ")
        for title, why, evidence in s.items:
            assert re.search(r"\(\d{4}\)$", title), title  # the catalog's title, not an id
            assert why and not why.startswith("evidence:"), why
            assert evidence.startswith("evidence: ") and len(evidence) > len("evidence: ")
    warm = next(s for s in shown if s.title == "a warm user, no query")
    assert warm.warmth == "WARM"
    if "the LLM reranked" in titles:
        reranked = next(s for s in shown if s.title == "the LLM reranked")
        assert "reranked the list" in reranked.llm
    # training is a bar and one line, not implicit's per-iteration loss lines
    assert len(re.findall(r"^train-cf: ALS .* training loss", demo_run.stdout, re.M)) == 1
    said = (demo_run.stdout + demo_run.stderr).splitlines()
    assert not [line for line in said if re.search(r" implicit[\w.]*: ", line)]
    assert len([line for line in said if "loss" in line]) <= 2  # the line, the job's log
    # the last lines: what to run next, with this run's topic prefix
    commands = next_commands(demo_run.stdout)
    prefix = re.search(r"--topic-prefix (demo-\d+\.)", commands[0])
    assert prefix, commands
    assert any(" evaluate " in c for c in commands) and any(" replay " in c for c in commands)
    assert all(c.startswith(STREAMREC) and prefix[1] in c for c in commands)


def test_the_printed_commands_work_on_what_the_demo_archived(demo_run: DemoRun) -> None:
    commands = next_commands(demo_run.stdout)
    for command in commands:
        result = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env=demo_run.env,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr
        if " evaluate " in command:
            assert "production (relevance: user.events" in result.stdout
        if "--policy no-llm" in command and " evaluate " in command:
            assert "no-llm (relevance: user.events" in result.stdout
    html = next(Path(m[1]) for c in commands if (m := re.search(r"--html (\S+)", c)) is not None)
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    # without the prefix, evaluate names the demo's run and the option that reads it
    plain = subprocess.run(
        [STREAMREC, "evaluate"], capture_output=True, text=True, env=demo_run.env, cwd=REPO
    )
    assert plain.returncode == 2
    prefix = re.search(r"--topic-prefix (demo-\d+\.)", commands[0])
    assert prefix and f"`streamrec evaluate --topic-prefix {prefix[1]}`" in plain.stderr
