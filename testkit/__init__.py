"""Test doubles and fixtures, shipped apart from the product.

The simulated LLM server, poison messages, the prompt-injection corpus, schema-compat
helpers and synthetic worlds. Tests, benchmarks and the demo use them; the production
packages (``streams``, ``recsys``, ``workers``, ``jobs``, ``stack``) never import them
(a test checks it). Not part of the wheel: available in a checkout's dev install.
"""
