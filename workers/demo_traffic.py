"""The request part of `streamrec demo`: logged requests, then what the users did next.

Requests go out once the history is in (so serving sees warm users as warm); the
users' next actions (:meth:`recsys.synthetic.SyntheticWorkload.outcomes`, independent of
what was recommended) go out only once the requests are answered, so serving never
sees them as already consumed. With `STREAMREC_ARCHIVE_USER_EVENTS=true` the archive
then holds everything `streamrec replay --policy` and `streamrec evaluate` need.
"""

from __future__ import annotations

from collections.abc import Callable

from recsys.synthetic import SyntheticWorkload
from streams.producer import RecordProducer
from streams.settings import Settings

__all__ = ["publish_requests_and_outcomes"]


def publish_requests_and_outcomes(
    settings: Settings, workload: SyntheticWorkload, n: int, wait: Callable[[], object]
) -> tuple[int, int]:
    """Publish ``n`` requests, ``wait()`` for the workers, publish the outcomes.

    Returns:
        (requests published, outcome events published).
    """
    requests = workload.requests(n)
    with RecordProducer(settings) as producer:
        for request in requests:
            producer.publish_request(request)
    wait()
    outcomes = workload.outcomes(requests)
    with RecordProducer(settings) as producer:
        for event in outcomes:
            producer.publish_user_event(event)
    return len(requests), len(outcomes)
