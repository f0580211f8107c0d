"""`streamrec chat USER_ID`: talk to the running serve worker, turn by turn."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import BrokerOpt, DatabaseOpt, console, load
from jobs.chat import ChatSession, ChatTurn
from recsys.records import DialogueAction
from streams.exceptions import RequestExpired

__all__ = ["chat"]

HELP = (
    "[dim]Answer in your own words or with an option's number. "
    "/show recommends now, /why shows the route and LLM use of the last reply, "
    "/details toggles that for every reply, /new starts over, /quit leaves.[/]"
)


def _signals(turn: ChatTurn) -> str:
    reply = turn.response.conversation
    if reply is None or not reply.signals:
        return ""
    said = ", ".join(f"{s.value} [dim](turn {s.turn})[/]" for s in reply.signals)
    return f"[dim]so far:[/] {said}"


def render(turn: ChatTurn) -> None:
    """A question with its options, or the recommendations with their reasons."""
    response, reply = turn.response, turn.response.conversation
    if reply is not None and reply.action is DialogueAction.QUESTION:
        console.print(f"[bold cyan]streamrec>[/] {reply.question}")
        options = "   ".join(f"[bold]{n}[/]. {o}" for n, o in enumerate(reply.options, 1))
        console.print(f"  {options}   [dim](or /show)[/]")
        if line := _signals(turn):
            console.print(f"  {line}  [dim]· {reply.candidates} candidates[/]")
        return
    if not response.items:
        console.print("[bold cyan]streamrec>[/] Nothing matches all of that; try /new.")
        return
    console.print("[bold cyan]streamrec>[/] Here is what I would pick:")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("title")
    table.add_column("why")
    for item in response.items:
        table.add_row(str(item.rank), turn.titles.get(item.item_id, item.item_id), item.explanation)
    console.print(table)
    if line := _signals(turn):
        console.print(f"  {line}")


def render_details(turn: ChatTurn) -> None:
    """Route, warmth, latency and every LLM decision of the last reply."""
    r, reply = turn.response, turn.response.conversation
    llm = f"yes ({r.llm_model})" if r.llm_used else "no"
    if r.llm_fallback_reason:
        llm += f", fallback: {r.llm_fallback_reason}"
    parts = [f"route {r.route.value}", f"warmth {r.warmth_bucket.value}", f"LLM used {llm}"]
    if reply is not None:
        parts += [f"turn read by {reply.parser}", f"why: {reply.reason}"]
    parts.append(f"{r.latency_ms:.0f} ms")
    console.print("  [dim]" + " · ".join(parts) + "[/]")
    for log in turn.logs:
        flags = "called" if log.called else "not called"
        if log.used:
            flags += ", used"
        extra = f" ({log.fallback_reason})" if log.fallback_reason else ""
        inj = " [red]injection flagged[/]" if log.injection_flagged else ""
        version = f" prompt {log.prompt_version}" if log.prompt_version else ""
        console.print(
            f"  [dim]llm-log {log.use_case.value}: {flags}{extra}{version} "
            f"{log.tokens_in}+{log.tokens_out} tokens {log.latency_ms:.0f} ms[/]{inj}"
        )


def chat(
    user_id: Annotated[str, typer.Argument(help="The user to chat as.")],
    k: Annotated[int, typer.Option("--k", min=1, max=20, help="Items to recommend.")] = 5,
    details: Annotated[
        bool, typer.Option("--details", help="Show route and LLM involvement with every reply.")
    ] = False,
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Chat with the recommender (against `streamrec up`): it asks a few short questions,
    then recommends, citing what you said."""
    from stack.embedded import running_postgres_dsn

    settings = load("chat", bootstrap_servers=broker, database_url=database)
    if settings.database_url is None and (dsn := running_postgres_dsn(settings)) is not None:
        settings = settings.with_overrides(database_url=dsn)
    session = ChatSession(settings, user_id, k=k).start()
    console.print(f"[bold]Chatting as {user_id}.[/] What would you like to watch?")
    console.print(HELP)
    last: ChatTurn | None = None
    try:
        while True:
            try:
                text = console.input("[bold green]you>[/] ").strip()
            except EOFError:
                break
            if not text:
                continue
            command = text.lower()
            if command in ("/quit", "/exit", "/q"):
                break
            if command == "/why":
                if last is not None:
                    render_details(last)
                continue
            if command == "/details":
                details = not details
                console.print(f"  [dim]details {'on' if details else 'off'}[/]")
                continue
            if command == "/new":
                session.new()
                console.print("[bold cyan]streamrec>[/] New conversation. What would you like?")
                continue
            show_now = command == "/show"
            try:
                last = session.say("" if show_now else text, show_now=show_now)
            except RequestExpired as exc:  # shed by serve: nothing was computed for it
                console.print(f"[bold cyan]streamrec>[/] [yellow]{exc}[/]", highlight=False)
                continue
            render(last)
            if details:
                render_details(last)
    finally:
        session.close()
    console.print("bye")
