"""Chat-completions wire format: request bodies, JSON replies and SSE streams.

Pure functions over already-received data; the HTTP side lives in :mod:`client`.

Rules applied here (documented in docs/fusion.md):
- An ``error`` object in a 200 body, or a chunk with an ``error`` object or
  ``finish_reason: "error"`` in a stream, is a failure (typed by its code), never an answer.
- SSE lines starting with ``:`` are comments (OpenRouter keep-alives) and are ignored;
  ``data: [DONE]`` ends a stream.
- Reasoning rule: when the content is empty but a reasoning field (``reasoning`` or
  ``reasoning_content``) is set, the reply fails with "empty answer (reasoning only)", unless
  the pool sets ``accept_reasoning``, in which case the reasoning text becomes the answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from samfusion.fusion.errors import (
    ApiError,
    EmptyAnswerError,
    MalformedResponseError,
    UpstreamError,
    error_for_status,
)

__all__ = [
    "Message",
    "Completion",
    "build_body",
    "body_error",
    "parse_completion",
    "iter_sse_data",
    "StreamAccumulator",
]

Message = Mapping[str, str]
Cleaner = Callable[[str], str]
_MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class Completion:
    """One successful model reply."""

    model: str
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # usage.cost when the server reported it
    reasoning: str = ""
    from_reasoning: bool = False  # text is the reasoning (accept_reasoning rule)
    generation_id: str = ""
    attempts: int = 1
    latency_s: float = 0.0


def build_body(
    model: str,
    messages: Sequence[Message],
    *,
    max_tokens: int,
    temperature: float,
    stream: bool,
    response_format: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in messages],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": stream,
    }
    if stream:
        # Needed by vLLM/OpenAI to put usage in the last chunk; OpenRouter always sends it.
        body["stream_options"] = {"include_usage": True}
    if response_format is not None:
        body["response_format"] = dict(response_format)
    if extra:
        body.update(extra)
    return body


def _short(text: str, clean: Cleaner) -> str:
    text = clean(" ".join(str(text).split()))
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def body_error(payload: Any, *, model: str, clean: Cleaner = str) -> ApiError | None:
    """The typed error carried by a JSON body, or None when the body is not an error."""
    if not isinstance(payload, Mapping):
        return None
    err = payload.get("error")
    if isinstance(err, Mapping):
        code, message = err.get("code"), err.get("message") or err.get("type") or "error"
    elif isinstance(err, str):
        code, message = None, err
    elif payload.get("object") == "error":  # vLLM's shape
        code, message = payload.get("code"), payload.get("message") or "error"
    else:
        return None
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return error_for_status(code, _short(str(message), clean), model=model)
    detail = f" ({code})" if code else ""
    return UpstreamError(
        f"{model}: error in response body{detail}: {_short(str(message), clean)}", model=model
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") in (None, "text")
        )
    return ""


def _reasoning_text(obj: Mapping[str, Any]) -> str:
    for key in ("reasoning", "reasoning_content"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(payload: Mapping[str, Any]) -> tuple[int, int, float | None]:
    usage = payload.get("usage")
    if not isinstance(usage, Mapping):
        return 0, 0, None
    prompt, completion, cost = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("cost")
    return (
        int(prompt) if isinstance(prompt, (int, float)) else 0,
        int(completion) if isinstance(completion, (int, float)) else 0,
        float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
    )


def _finish(
    *,
    model: str,
    text: str,
    reasoning: str,
    finish_reason: str,
    usage: tuple[int, int, float | None],
    generation_id: str,
    accept_reasoning: bool,
) -> Completion:
    from_reasoning = False
    if not text.strip():
        if reasoning.strip() and accept_reasoning:
            text, from_reasoning = reasoning.strip(), True
        elif reasoning.strip():
            raise EmptyAnswerError(f"{model}: empty answer (reasoning only)", model=model)
        else:
            raise EmptyAnswerError(
                f"{model}: empty answer (finish_reason {finish_reason or 'none'})", model=model
            )
    return Completion(
        model=model,
        text=text.strip(),
        finish_reason=finish_reason,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        cost_usd=usage[2],
        reasoning=reasoning,
        from_reasoning=from_reasoning,
        generation_id=generation_id,
    )


def parse_completion(
    payload: Any, *, model: str, accept_reasoning: bool = False, clean: Cleaner = str
) -> Completion:
    """A non-streamed reply body (already JSON-decoded) as a :class:`Completion`."""
    error = body_error(payload, model=model, clean=clean)
    if error is not None:
        raise error
    if not isinstance(payload, Mapping):
        raise MalformedResponseError(f"{model}: reply is not a JSON object", model=model)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponseError(f"{model}: reply has no choices", model=model)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), Mapping) else {}
    finish_reason = str(choice.get("finish_reason") or "")
    if finish_reason == "error":
        raise UpstreamError(f"{model}: generation ended with finish_reason 'error'", model=model)
    return _finish(
        model=model,
        text=_content_text(message.get("content")),
        reasoning=_reasoning_text(message),
        finish_reason=finish_reason,
        usage=_usage(payload),
        generation_id=str(payload.get("id") or ""),
        accept_reasoning=accept_reasoning,
    )


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Data payloads of an SSE stream, one per event, up to ``[DONE]``.

    Comment lines (``:`` first) are skipped; multi-line ``data:`` fields are joined with
    newlines; other fields (``event:``, ``id:``, ``retry:``) are ignored. After ``[DONE]`` the
    rest of the body is read and dropped, so the connection can go back to the pool.
    """
    data: list[str] = []
    finished = False
    async for raw in lines:
        if finished:
            continue
        line = raw.rstrip("\r")
        if not line:
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    finished = True
                    continue
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data and not finished:
        payload = "\n".join(data)
        if payload.strip() != "[DONE]":
            yield payload


class StreamAccumulator:
    """Collects streamed chunks into one :class:`Completion`."""

    def __init__(self, *, model: str, accept_reasoning: bool = False, clean: Cleaner = str) -> None:
        self._model = model
        self._accept_reasoning = accept_reasoning
        self._clean = clean
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._finish_reason = ""
        self._usage: tuple[int, int, float | None] = (0, 0, None)
        self._id = ""
        self.chunks = 0

    def feed(self, data: str) -> None:
        """Add one event's data; raises the typed error of an error chunk."""
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise MalformedResponseError(
                f"{self._model}: malformed stream chunk: {_short(data, self._clean)}",
                model=self._model,
            ) from None
        self.chunks += 1
        error = body_error(chunk, model=self._model, clean=self._clean)
        if error is not None:
            raise error
        if not isinstance(chunk, Mapping):
            raise MalformedResponseError(f"{self._model}: stream chunk is not an object", model=self._model)
        self._id = self._id or str(chunk.get("id") or "")
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = _usage(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices[:1]:
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), Mapping) else {}
            self._text.append(_content_text(delta.get("content")))
            self._reasoning.append(_reasoning_text(delta))
            reason = choice.get("finish_reason")
            if reason == "error":
                raise UpstreamError(
                    f"{self._model}: stream ended with finish_reason 'error'", model=self._model
                )
            if reason:
                self._finish_reason = str(reason)

    def result(self) -> Completion:
        if self.chunks == 0:
            raise MalformedResponseError(f"{self._model}: empty stream", model=self._model)
        return _finish(
            model=self._model,
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            finish_reason=self._finish_reason,
            usage=self._usage,
            generation_id=self._id,
            accept_reasoning=self._accept_reasoning,
        )

