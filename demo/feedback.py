"""The demo's feedback and archive section: examples joined, windows still open, and
the archive files written per topic."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.table import Table

from recsys.archive import list_files
from streams.lag import topic_sizes
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["report_feedback_archive"]

log = logging.getLogger(__name__)


def _join_state(settings: Settings) -> dict[str, int] | None:
    if settings.database_url is None:
        return None
    import psycopg

    try:
        with psycopg.connect(settings.database_url.get_secret_value(), connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE emitted_at IS NULL), count(emitted_at), "
                "(SELECT count(*) FROM feedback_events) FROM feedback_impressions"
            ).fetchone()
    except psycopg.Error as exc:  # no feedback tables (worker not migrated) or no database
        log.warning("feedback state unavailable: %s", exc)
        return None
    assert row is not None
    return {"open": row[0], "emitted": row[1], "events": row[2]}


def report_feedback_archive(console: Console, settings: Settings, topics: Topics) -> None:
    """Print what the feedback and archive workers produced."""
    sizes = topic_sizes(settings, [topics.feedback_examples.name, topics.rec_responses.name])
    examples = sizes[topics.feedback_examples.name]
    state = _join_state(settings)
    line = f"feedback: {examples} example(s) on {topics.feedback_examples.base}"
    if not sizes[topics.rec_responses.name]:
        line += " (no responses were logged: nothing to join)"
    if state is not None:
        line += (
            f"; impressions joined and closed {state['emitted']}, windows still open "
            f"{state['open']} (attribution window {settings.attribution_window_s}s), "
            f"outcome events held {state['events']}"
        )
    console.print(line)
    root = settings.archive_root
    table = Table(title=f"archive files in {root}")
    for col in ("topic", "files", "records (offset span)", "bytes"):
        table.add_column(col, justify="left" if col == "topic" else "right")
    for spec in topics.data_topics():
        files = list_files(root, spec.name)
        if not files:
            continue
        span = sum(f.last_offset - f.first_offset + 1 for f in files)
        size = sum(f.path.stat().st_size for f in files)
        table.add_row(spec.base, str(len(files)), str(span), str(size))
    if table.row_count:
        console.print(table)
    else:
        console.print(f"archive: no files yet under {root} (nothing logged, or not rolled yet)")
