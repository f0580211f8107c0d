"""The recommendation domain. Nothing here imports Kafka: a data scientist can
``import recsys`` and evaluate a policy offline."""
