"""`streamrec dlq show|replay`: what a dead-letter topic holds, and re-publishing it once."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import BrokerOpt, console, load, progress_bar

__all__ = ["dlq_replay", "dlq_show"]

TopicArg = Annotated[
    str, typer.Argument(help="A topic or its DLQ, e.g. user.events or user.events.dlq.")
]


def dlq_show(
    topic: TopicArg,
    broker: BrokerOpt = None,
    limit: Annotated[int, typer.Option(help="Source messages to list (newest last).")] = 20,
) -> None:
    """Dead letters of a topic, grouped by source message: which groups refused it, why."""
    from jobs.dlq import inspect_dlq

    summary = inspect_dlq(load(bootstrap_servers=broker), topic)
    console.print(
        f"{summary.topic}: {summary.letters} dead letter(s) of {len(summary.sources)} source "
        f"message(s) of {summary.source_topic}; {summary.redeliveries} sent again after a "
        "crash (same group, same source)",
        highlight=False,
    )
    if summary.by_reason:
        reasons = ", ".join(f"{r} {n}" for r, n in summary.by_reason.most_common())
        groups = ", ".join(f"{g} {n}" for g, n in summary.by_group.most_common())
        console.print(f"by reason: {reasons}\nby group:  {groups}", highlight=False)
    table = Table(title=f"source messages (last {limit})")
    for col in ("source", "groups", "reasons", "error"):
        table.add_column(col, overflow="fold")
    for entry in summary.sources[-limit:]:
        letter = entry.first.letter
        table.add_row(
            letter.source,
            ", ".join(entry.groups),
            ", ".join(sorted({m.letter.reason for m in entry.letters})),
            letter.error[:160],
        )
    console.print(table)


def dlq_replay(
    topic: TopicArg,
    broker: BrokerOpt = None,
    reason: Annotated[
        str | None, typer.Option(help="Only sources with a letter of this reason.")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Only sources this consumer group (or worker) parked.")
    ] = None,
    publish: Annotated[
        str | None, typer.Option(help="Publish here instead of the source topic.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Count, publish nothing.")] = False,
) -> None:
    """Re-publish each dead-lettered source message once (to its source topic by default),
    whatever the number of groups that parked it; run it after fixing the cause."""
    from jobs.dlq import replay_dlq

    settings = load(bootstrap_servers=broker)
    with progress_bar("dlq replay") as bar:
        task = bar.add_task(topic, total=None)
        result = replay_dlq(
            settings,
            topic,
            reason=reason,
            group=group,
            publish=publish,
            dry_run=dry_run,
            progress=lambda n: bar.advance(task, n),
        )
    verb = "would publish" if result.dry_run else "published"
    console.print(
        f"{verb} {result.published} source message(s) → {result.target} "
        f"({result.letters} dead letter(s); {result.skipped_duplicates} duplicate letter(s) "
        "of the same source skipped)",
        highlight=False,
    )
