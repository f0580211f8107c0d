"""Yardstick of the embedded broker: raw confluent-kafka produce and consume throughput
and a request/response echo round trip. Later benchmarks put their figures beside these.

    python -m benchmarks kafka [--messages 200000] [--size 200]
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import create_topic, echo_round_trip, embedded_stack, emit


def produce_throughput(bootstrap: str, topic: str, n: int, size: int) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    payload = b"x" * size
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, payload, key=str(i % 1000))
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(60)
    return n / (time.perf_counter() - start)


def consume_throughput(bootstrap: str, topic: str, n: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"y-{uuid.uuid4().hex[:6]}",
            "fetch.wait.max.ms": 100,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    start = time.perf_counter()
    while got < n and time.perf_counter() - start < 120:
        got += sum(1 for m in consumer.consume(10000, 0.5) if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    return got / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--echo", type=int, default=500)
    args = parser.parse_args()
    with embedded_stack() as settings:
        bootstrap = settings.kafka_bootstrap
        topic = f"yard-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic)
        produced = produce_throughput(bootstrap, topic, args.messages, args.size)
        consumed = consume_throughput(bootstrap, topic, args.messages)
        echo_fast = echo_round_trip(bootstrap, n=args.echo, rate_per_s=100, fetch_wait_ms=5)
        echo_default = echo_round_trip(bootstrap, n=60, rate_per_s=20, fetch_wait_ms=500)
    emit(
        {
            "benchmark": "kafka_yardstick",
            "message_bytes": args.size,
            "produce_msgs_per_s": round(produced),
            "consume_msgs_per_s": round(consumed),
            "echo_fetch_wait_5ms": echo_fast,
            "echo_fetch_wait_500ms": echo_default,
            "echo_p99_ms": echo_fast["p99_ms"],
        }
    )


if __name__ == "__main__":
    main()
