"""Seeing a running stack: every worker's /metrics counts exactly what a small workload
did, and the dashboard (driven by headless Chromium) shows the try-it answers as the
rec.responses records have them, with untrusted text shown as text."""

from __future__ import annotations

import collections
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.records import CatalogChange, EventType, RecResponse, UserEvent
from stack.embedded import EmbeddedBroker
from streams.client import RecClient
from streams.producer import RecordProducer
from testkit.llm_server import SIMULATED_MODEL, SimulatedLlmServer
from tests.browser import chromium
from tests.helpers import read_topic, wait_until
from tests.integration.observed_stack import Up, scrape, start_up, stop_up, value, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKERS = ("enrich", "users", "serve", "feedback", "archive")
XSS_TITLE = "<script>alert('xss')</script> Space comedy"
POISON = b"<img src=x onerror=alert(1)> not avro"
GENRES = ("comedy", "space", "drama", "horror")


@pytest.fixture(scope="module")
def llm() -> Iterator[SimulatedLlmServer]:
    with SimulatedLlmServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    broker: EmbeddedBroker,
    module_database: str,
    llm: SimulatedLlmServer,
) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("observed")
    up = start_up(
        tmp,
        broker.bootstrap,
        module_database,
        llm_base_url=llm.base_url,
        llm_model=SIMULATED_MODEL,
        warm_min_interactions=5,
        cold_max_interactions=1,
        route_epsilon=0.0,
    )
    try:
        wait_ready(up, WORKERS)
        yield up
    finally:
        stop_up(up)


@pytest.fixture(scope="module")
def workload(stack: Up) -> dict[str, object]:
    """20 items (one with an HTML title), 8 clicks of a warm user, 1 poison event,
    5 requests; returns what was done."""
    s = stack.settings
    producer = RecordProducer(s)
    topics = producer.topics
    items = []
    for i in range(19):
        genre = GENRES[i % len(GENRES)]
        items.append(
            CatalogChange(
                item_id=f"m{i}",
                version=1,
                title=f"A {genre} film number {i}",
                categories=[genre],
                description=f"A {genre} story about crew {i} far from home.",
            )
        )
    items.append(
        CatalogChange(
            item_id="x-html",
            version=1,
            title=XSS_TITLE,
            categories=["comedy"],
            description="<b>bold</b> & <img src=x onerror=alert(2)> in a space ship",
        )
    )
    for item in items:
        producer.send(topics.catalog_changes, item.item_id, item)
    producer.flush()
    wait_until(
        lambda: value(scrape(s, "enrich"), "streamrec_messages_handled_total") >= len(items),
        timeout_s=120,
        what="enrich handled the items",
    )
    clicks = [
        UserEvent(user_id="u-warm", event_type=EventType.CLICK, item_id=f"m{i}")
        for i in (0, 4, 8, 12, 16, 1, 5, 9)
    ]
    for event in clicks:
        producer.send(topics.user_events, event.user_id, event)
    producer.send_raw(topics.user_events, "u-poison", POISON)
    producer.flush()
    wait_until(
        lambda: value(scrape(s, "users"), "streamrec_messages_consumed_total") >= len(clicks) + 1,
        timeout_s=60,
        what="users consumed the events",
    )
    routes: collections.Counter[str] = collections.Counter()
    with RecClient(s) as client:
        for user, query in [
            ("u-warm", None),
            ("u-warm", None),
            ("u-warm", "something funny"),
            (f"u-new-{uuid.uuid4().hex[:6]}", "a funny space comedy"),
            (f"u-new-{uuid.uuid4().hex[:6]}", None),
        ]:
            # a deadline as long as the wait: this test counts answers, not deadlines
            response = client.request(user, query=query, timeout_s=30, deadline_ms=30_000)
            routes[response.route.value] += 1
    producer.close()
    return {"items": len(items), "events": len(clicks), "poison": 1, "routes": routes}


def _eventually(check: object, what: str, timeout_s: float = 30.0) -> None:
    def ok() -> bool:
        try:
            check()  # type: ignore[operator]
        except AssertionError:
            return False
        return True

    if not wait_until(ok, timeout_s=timeout_s, what=what, interval_s=0.5):
        check()  # type: ignore[operator]


def test_each_workers_metrics_count_what_the_workload_did(
    stack: Up, workload: dict[str, object]
) -> None:
    s = stack.settings
    t = RecordProducer(s).topics
    n_items, n_events = int(workload["items"]), int(workload["events"])  # type: ignore[call-overload]
    routes: collections.Counter[str] = workload["routes"]  # type: ignore[assignment]
    n_requests = sum(routes.values())

    enrich = scrape(s, "enrich")
    topic = t.catalog_changes.name
    assert value(enrich, "streamrec_messages_consumed_total", topic=topic) == n_items
    assert value(enrich, "streamrec_messages_handled_total", topic=topic) == n_items
    statuses = value(enrich, "streamrec_enrich_items_total")
    assert statuses == n_items
    assert value(enrich, "streamrec_llm_decisions_total", worker="enrich") >= n_items

    def users_counts() -> None:
        users = scrape(s, "users")
        ue = t.user_events.name
        assert value(users, "streamrec_messages_consumed_total", topic=ue) == n_events + 1
        assert value(users, "streamrec_messages_handled_total", topic=ue) == n_events
        assert value(users, "streamrec_messages_dead_lettered_total", topic=ue) == 1
        assert value(users, "streamrec_users_events_total", result="applied") == n_events

    _eventually(users_counts, "users counters")

    serve = scrape(s, "serve")
    rq = t.rec_requests.name
    assert value(serve, "streamrec_messages_consumed_total", topic=rq) == n_requests
    assert value(serve, "streamrec_messages_handled_total", topic=rq) == n_requests
    for route in ("CF", "CONTENT", "HYBRID", "POPULARITY"):
        assert value(serve, "streamrec_serve_requests_total", route=route) == routes[route], route
    assert value(serve, "streamrec_serve_request_seconds_count") == n_requests
    assert value(serve, "streamrec_llm_decisions_total", worker="serve", decision="called") >= 1
    # one per serve process (`up` runs serve_replicas of them; the gauge sums live ones)
    closed = value(serve, "streamrec_llm_breaker_state", state="closed")
    assert closed == s.serve_replicas

    def feedback_counts() -> None:
        fb = scrape(s, "feedback")
        assert value(fb, "streamrec_messages_consumed_total", topic=t.rec_responses.name) == (
            n_requests
        )
        assert value(fb, "streamrec_messages_dead_lettered_total", topic=t.user_events.name) == 1

    _eventually(feedback_counts, "feedback counters")

    def archive_counts() -> None:
        ar = scrape(s, "archive")
        assert value(ar, "streamrec_messages_handled_total", topic=t.rec_responses.name) == (
            n_requests
        )

    _eventually(archive_counts, "archive counters")
    sup = scrape(s, "supervisor")
    # one per process: serve runs serve_replicas of them (serve, serve-2, …)
    assert value(sup, "streamrec_worker_up") == len(WORKERS) - 1 + s.serve_replicas
    assert value(sup, "streamrec_worker_restarts_total") == 0
    # one line format on every line, and one file per worker
    logs = s.home / "logs"
    for name in (*WORKERS, "up"):
        text = (logs / f"{name}.log").read_text()
        assert f" {name}[" in text.splitlines()[0], text.splitlines()[0]
    assert "serve progress: consumed" in (logs / "serve.log").read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_untrusted_text_is_shown_as_text(stack: Up, workload: dict[str, object]) -> None:
    page = _get(stack.dashboard + "/catalog?item=x-html")
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    dlq = RecordProducer(stack.settings).topics.user_events.dlq
    assert dlq is not None
    letters = _get(stack.dashboard + f"/dlq?topic={dlq.name}")
    assert "&lt;img src=x onerror=alert(1)&gt;" in letters and "<img src=x" not in letters


def _response(up: Up, request_id: str, count: int) -> RecResponse:
    producer = RecordProducer(up.settings)
    messages = read_topic(up.settings, producer.topics.rec_responses.name, count)
    for msg in messages:
        response = producer.serde.decode(msg.value(), RecResponse)
        if response.request_id == request_id:
            return response
    raise AssertionError(f"no rec.responses record for {request_id}")


def _check_try(driver: object, up: Up, count: int, shots: Path, name: str) -> RecResponse:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, "request-id")))
    d = driver
    request_id = d.find_element(By.ID, "request-id").text  # type: ignore[attr-defined]
    record = _response(up, request_id, count)
    assert d.find_element(By.ID, "route").text == record.route.value  # type: ignore[attr-defined]
    assert d.find_element(By.ID, "warmth").text == record.warmth_bucket.value  # type: ignore[attr-defined]
    assert d.find_element(By.ID, "propensity").text == f"{record.propensity:.3f}"  # type: ignore[attr-defined]
    shown = d.find_elements(By.CSS_SELECTOR, "li.rec-item")  # type: ignore[attr-defined]
    assert [li.get_attribute("data-item-id") for li in shown] == [i.item_id for i in record.items]
    explanations = [li.find_element(By.CLASS_NAME, "explanation").text for li in shown]
    assert explanations == [i.explanation.strip() for i in record.items]
    assert record.items, "an answer with items"
    d.save_screenshot(str(shots / name))  # type: ignore[attr-defined]
    return record


def test_the_dashboard_in_a_browser(stack: Up, workload: dict[str, object], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    n_requests = sum(workload["routes"].values())  # type: ignore[attr-defined]
    with chromium() as d:
        d.get(stack.dashboard + "/")
        WebDriverWait(d, 60).until(
            lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#workers .state.ready")) == 5
        )
        d.save_screenshot(str(shots / "overview.png"))
        d.get(stack.dashboard + "/serving")
        assert d.find_element(By.ID, "requests").text != "0"
        d.save_screenshot(str(shots / "serving.png"))
        d.get(stack.dashboard + "/catalog?item=x-html")
        assert XSS_TITLE in d.find_element(By.ID, "item-title").text  # shown as text
        assert d.find_elements(By.CSS_SELECTOR, "table.neighbours tr")
        d.save_screenshot(str(shots / "catalog.png"))

        d.get(stack.dashboard + "/try")
        d.find_element(By.ID, "user_id").send_keys("u-warm")
        d.find_element(By.ID, "ask").click()
        warm = _check_try(d, stack, n_requests + 1, shots, "try-warm.png")
        assert warm.warmth_bucket.value == "WARM"

        d.get(stack.dashboard + "/try")
        d.find_element(By.ID, "user_id").send_keys(f"u-newcomer-{uuid.uuid4().hex[:6]}")
        # a query of its own: no cached rerank, so the prompt as sent is on the log
        d.find_element(By.ID, "query").send_keys("a drama about a crew far from home")
        d.find_element(By.ID, "ask").click()
        new = _check_try(d, stack, n_requests + 2, shots, "try-new.png")
        assert new.warmth_bucket.value == "COLD"
        uses = [
            r.get_attribute("data-use-case")
            for r in d.find_elements(By.CSS_SELECTOR, "tr.llm-record")
        ]
        assert "RERANK" in uses
        assert d.find_elements(By.CSS_SELECTOR, "details.prompt pre")  # the prompt as sent

        dlq = RecordProducer(stack.settings).topics.user_events.dlq
        assert dlq is not None
        d.get(stack.dashboard + f"/dlq?topic={dlq.name}")
        previews = [p.text for p in d.find_elements(By.CSS_SELECTOR, "pre.preview")]
        assert any("<img src=x onerror=alert(1)>" in p for p in previews)
        d.save_screenshot(str(shots / "dlq.png"))
    for name in ("overview", "serving", "catalog", "try-warm", "try-new", "dlq"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    print(f"screenshots in {shots}")
