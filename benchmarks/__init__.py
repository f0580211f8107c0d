"""Benchmarks: one script per figure, each printing one JSON object as its last line.

Never part of the test run. Every figure sits beside a yardstick measured in the same
run on the same embedded stack (e.g. a raw confluent-kafka consumer), so ratios are
comparable across machines.
"""
