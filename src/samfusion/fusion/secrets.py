"""API key loading and redaction.

The key comes from an environment variable (``OPENROUTER_API_KEY`` by default) or from a key
file path; it is never a configuration or ROS parameter value. :class:`ApiKey` keeps the value
out of ``repr``/``str`` so it cannot leak through logging or exception formatting, and
:func:`redact` scrubs it (and anything that looks like a bearer token) from text that came
back from a server before that text is stored in an error or a response.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from samfusion.fusion.errors import ApiKeyError

__all__ = [
    "DEFAULT_KEY_ENV",
    "ApiKey",
    "load_api_key",
    "redact",
    "RedactingFilter",
]

DEFAULT_KEY_ENV = "OPENROUTER_API_KEY"
_MASK = "***"
# OpenRouter keys ("sk-or-v1-...") and bearer tokens echoed back by a proxy or server.
_TOKEN_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
)


class ApiKey:
    """An API key whose value is only reachable through :meth:`reveal`."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str) -> None:
        value = value.strip()
        if not value:
            raise ApiKeyError(f"API key from {source} is empty")
        if any(ch.isspace() for ch in value):
            raise ApiKeyError(f"API key from {source} contains whitespace")
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The key itself, for the Authorization header only."""
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey(source={self.source!r}, value={_MASK})"

    __str__ = __repr__

    def __reduce__(self) -> object:  # never pickle the value into another process or a file
        raise TypeError("ApiKey cannot be pickled")


def load_api_key(
    *,
    env_var: str = DEFAULT_KEY_ENV,
    key_file: str | os.PathLike[str] | None = None,
    required: bool = True,
    environ: dict[str, str] | None = None,
) -> ApiKey | None:
    """Load the key from ``key_file`` when given, otherwise from the environment variable.

    A key file must be a regular file; its first non-empty line is the key. Returns None when
    nothing is configured and ``required`` is false (local OpenAI-compatible servers often need
    no key). Errors name the variable or the path, never the value.
    """
    env = os.environ if environ is None else environ
    if key_file:
        path = Path(key_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ApiKeyError(f"cannot read API key file {path}: {exc.strerror}") from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ApiKeyError(f"API key file {path} is empty")
        return ApiKey(lines[0], source=f"file {path}")
    if env_var:
        value = env.get(env_var, "")
        if value.strip():
            return ApiKey(value, source=f"environment variable {env_var}")
    if required:
        where = f"environment variable {env_var}" if env_var else "no variable configured"
        raise ApiKeyError(f"no API key: {where} is unset and no key file was given")
    return None


def redact(text: str, *secrets: str | ApiKey | None) -> str:
    """``text`` with every given secret and every token-looking string replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, ApiKey) else secret
        if value:
            text = text.replace(value, _MASK)
    text = _TOKEN_PATTERNS[0].sub(_MASK, text)
    return _TOKEN_PATTERNS[1].sub(lambda m: m.group(1) + _MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the key from messages and arguments of every record."""

    def __init__(self, key: ApiKey | None) -> None:
        super().__init__()
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                record.msg = str(record.msg)
            record.args = None
        record.msg = redact(str(record.msg), self._key)
        return True
