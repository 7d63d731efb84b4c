"""LLM fusion: an async OpenRouter client and an engine that fuses a pool of models' answers.

Pure core (no rclpy): :mod:`client` talks to OpenRouter or any OpenAI-compatible server,
:mod:`engine` runs best-of / merge / debate / server-side fusion over a pool from
:mod:`config`. See docs/fusion.md.
"""

__all__: list[str] = []
