"""The `streamrec` command line: every command registered here, explicitly.

Commands live in :mod:`cli.stack_cmds` (run and inspect a deployment),
:mod:`cli.data_cmds` (train, replay, evaluate, A/B), :mod:`cli.policy_cmds`
(learn-policy), :mod:`cli.dlq_cmds` (dead letters), :mod:`cli.demo_cmd` and
:mod:`cli.chat_cmd` (talk to the serve worker); each is a thin layer over jobs, workers
and the local stack, wrapped in :func:`cli.common.friendly_errors` so that a user's
mistake is one line, not a traceback.
"""

from __future__ import annotations

import typer

from cli import chat_cmd, data_cmds, demo_cmd, dlq_cmds, policy_cmds, stack_cmds
from cli.common import friendly_errors

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamrec",
    help="LLM-augmented recommendations over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
topics_app = typer.Typer(help="Create and list the topic catalogue.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Inspect dead-letter topics and re-publish what they parked, once per source.",
    no_args_is_help=True,
)

app.command("up")(friendly_errors(stack_cmds.up))
app.command("worker")(friendly_errors(stack_cmds.worker))
app.command("doctor")(friendly_errors(stack_cmds.doctor))
app.command("dashboard")(friendly_errors(stack_cmds.dashboard))
app.command("migrate")(friendly_errors(stack_cmds.migrate))
app.command("settings")(friendly_errors(stack_cmds.settings_cmd))
app.add_typer(topics_app, name="topics")
topics_app.command("create")(friendly_errors(stack_cmds.topics_create))
topics_app.command("list")(friendly_errors(stack_cmds.topics_list))
app.add_typer(dlq_app, name="dlq")
dlq_app.command("show")(friendly_errors(dlq_cmds.dlq_show))
dlq_app.command("replay")(friendly_errors(dlq_cmds.dlq_replay))
app.command("demo")(friendly_errors(demo_cmd.demo))
app.command("chat")(friendly_errors(chat_cmd.chat))
app.command("train-cf")(friendly_errors(data_cmds.train_cf))
app.command("replay")(friendly_errors(data_cmds.replay))
app.command("evaluate")(friendly_errors(data_cmds.evaluate))
app.command("learn-policy")(friendly_errors(policy_cmds.learn_policy))
app.command("ab-enrich")(friendly_errors(data_cmds.ab_enrich))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
