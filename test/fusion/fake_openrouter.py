"""A local OpenRouter-compatible HTTP server for tests and benchmarks (127.0.0.1 only).

It speaks enough HTTP/1.1 (keep-alive, Content-Length bodies, chunked SSE) for httpx and
scripts, per model, what each call gets: answers with latency and usage, HTTP errors with
Retry-After, stalls after the headers or in the middle of a body, malformed JSON, errors inside
a 200 body, error chunks in the middle of a stream, keep-alive comment lines, and empty content
with reasoning set. Every wait is bounded (``max_stall_s``) and ends when the server stops; the
asyncio loop runs in a daemon thread, so a forgotten server cannot keep a test process alive.

    with FakeOpenRouter() as server:
        server.script("m/a", HttpError(429, retry_after="0"), Reply("hello"))
        ...  # point a client at server.base_url
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "Reply",
    "HttpError",
    "StallAfterHeaders",
    "StalledBody",
    "MalformedJson",
    "ErrorIn200",
    "MidStreamError",
    "Behaviour",
    "Call",
    "FakeOpenRouter",
    "candidate_blocks",
    "judge_choosing",
]


@dataclass(frozen=True)
class Reply:
    """A successful completion. ``latency_s`` passes before the headers are sent."""

    text: str = "ok"
    reasoning: str = ""
    latency_s: float = 0.0
    prompt_tokens: int = 12
    completion_tokens: int = 7
    cost: float | None = None
    finish_reason: str = "stop"
    chunks: int = 3
    keepalives: int = 0
    chunk_delay_s: float = 0.0
    usage: bool = True


@dataclass(frozen=True)
class HttpError:
    status: int
    message: str = ""
    retry_after: str | None = None
    latency_s: float = 0.0
    echo_auth: bool = False  # put the received Authorization header into the message


@dataclass(frozen=True)
class StallAfterHeaders:
    """200 headers, then silence for ``seconds`` (bounded by the server's max stall)."""

    seconds: float = 5.0


@dataclass(frozen=True)
class StalledBody:
    """Part of the body (one chunk of a stream, half a JSON body), then silence."""

    seconds: float = 5.0
    text: str = "partial"


@dataclass(frozen=True)
class MalformedJson:
    body: str = '{"choices": [ {"message": '


@dataclass(frozen=True)
class ErrorIn200:
    code: int | str = 502
    message: str = "provider returned an error"


@dataclass(frozen=True)
class MidStreamError:
    text_before: str = "partial answer"
    message: str = "provider disconnected"


Behaviour = Union[Reply, HttpError, StallAfterHeaders, StalledBody, MalformedJson, ErrorIn200, MidStreamError]
Responder = Callable[[dict[str, Any]], Behaviour]


@dataclass
class Call:
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    finished_at: float = 0.0
    disconnected: bool = False  # the client went away before the reply was complete


_BLOCK = re.compile(r"\[Response ([A-Z])\]\n(.*?)\n\[end of Response \1\]", re.S)


def candidate_blocks(body: Mapping[str, Any]) -> dict[str, str]:
    """Label -> text of the anonymized candidates in a judge/debate request's last message."""
    content = str(body["messages"][-1]["content"])
    return {label: text for label, text in _BLOCK.findall(content)}


def judge_choosing(keyword: str, *, latency_s: float = 0.0, cost: float | None = None) -> Responder:
    """A judge that gives 9 to candidates containing ``keyword`` and 2 to the others."""

    def respond(body: dict[str, Any]) -> Behaviour:
        blocks = candidate_blocks(body)
        scores = {label: (9 if keyword in text else 2) for label, text in blocks.items()}
        best = max(scores, key=lambda k: scores[k]) if scores else "A"
        decision = {"scores": scores, "best": best, "reason": f"Response {best} mentions {keyword}"}
        return Reply(json.dumps(decision), latency_s=latency_s, cost=cost)

    return respond


class _Disconnected(Exception):
    pass


class FakeOpenRouter:
    """Scripted chat-completions and models endpoints on 127.0.0.1:<ephemeral port>."""

    def __init__(self, *, max_stall_s: float = 5.0, default: Behaviour | None = None) -> None:
        self.max_stall_s = max_stall_s
        self.default: Behaviour | Responder = default or Reply()
        self.models_payload: dict[str, Any] = {"data": []}
        self.models_requests = 0
        self.models_delay_s = 0.0  # a slow price list (bounded by max_stall_s)
        self.connections = 0  # TCP connections accepted (pooling check)
        self.calls: list[Call] = []
        self._scripts: dict[str, list[Behaviour | Responder]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.port = 0

    # -- scripting -------------------------------------------------------------------
    def script(self, model: str, *behaviours: Behaviour | Responder) -> None:
        """Calls to ``model`` get these behaviours in order; the last one repeats."""
        with self._lock:
            self._scripts[model] = list(behaviours)

    def calls_for(self, model: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.model == model]

    def _next(self, model: str, body: dict[str, Any]) -> Behaviour:
        with self._lock:
            queue = self._scripts.get(model)
            if queue:
                item = queue.pop(0) if len(queue) > 1 else queue[0]
            else:
                item = self.default
        return item(body) if callable(item) else item

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeOpenRouter:
        self._thread = threading.Thread(target=self._run, name="fake-openrouter", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenRouter server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeOpenRouter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            self.connections += 1
            try:
                await self._connection(reader, writer)
            except (ConnectionError, _Disconnected, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # client went away, or the server is stopping
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- HTTP ------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(length) if length else b""
            if method == "GET" and path.rstrip("/").endswith("/models"):
                self.models_requests += 1
                await self._pause(self.models_delay_s, reader)
                await self._send_json(writer, 200, self.models_payload)
            elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                await self._completion(reader, writer, json.loads(raw or b"{}"), headers)
            else:
                await self._send_json(writer, 404, {"error": {"code": 404, "message": f"no route {path}"}})

    async def _pause(self, seconds: float, reader: asyncio.StreamReader) -> None:
        """Wait ``seconds`` (bounded), or until stop; raise _Disconnected if the client leaves."""
        assert self._stop is not None
        seconds = min(seconds, self.max_stall_s)
        if seconds <= 0:
            return
        eof = asyncio.ensure_future(reader.read(1))
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({eof, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in (eof, stop):
            if not task.done():
                task.cancel()
        # Let the cancelled read finish before the connection reads its next request.
        await asyncio.gather(eof, stop, return_exceptions=True)
        if eof in done and eof.result() == b"":
            raise _Disconnected
        if stop in done:
            raise _Disconnected

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def _send_json(
        self, writer: asyncio.StreamWriter, status: int, payload: Any, extra: Mapping[str, str] | None = None
    ) -> None:
        await self._send_raw(writer, status, json.dumps(payload).encode(), extra)

    async def _send_raw(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, extra: Mapping[str, str] | None = None
    ) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        await self._write(writer, head.encode() + b"\r\n" + body)

    async def _start_stream(self, writer: asyncio.StreamWriter) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        await self._write(writer, head.encode())

    async def _chunk(self, writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        await self._write(writer, f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def _event(self, writer: asyncio.StreamWriter, payload: Any) -> None:
        await self._chunk(writer, f"data: {json.dumps(payload)}\n\n")

    async def _completion(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        model = str(body.get("model", ""))
        call = Call(model=model, body=body, headers=headers, received_at=time.monotonic())
        with self._lock:
            self.calls.append(call)
        behaviour = self._next(model, body)
        try:
            await self._respond(reader, writer, body, headers, behaviour)
        except _Disconnected:
            call.disconnected = True
            raise
        finally:
            call.finished_at = time.monotonic()

    async def _respond(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        headers: dict[str, str],
        b: Behaviour,
    ) -> None:
        model, stream = str(body.get("model", "")), bool(body.get("stream"))
        base = {"id": f"gen-{len(self.calls)}", "object": "chat.completion", "model": model}
        if isinstance(b, HttpError):
            await self._pause(b.latency_s, reader)
            message = b.message or f"scripted {b.status}"
            if b.echo_auth:
                message += f" (received {headers.get('authorization', '')})"
            extra = {"Retry-After": b.retry_after} if b.retry_after is not None else None
            await self._send_json(writer, b.status, {"error": {"code": b.status, "message": message}}, extra)
        elif isinstance(b, MalformedJson):
            if stream:
                await self._start_stream(writer)
                await self._chunk(writer, f"data: {b.body}\n\n")
                await self._chunk(writer, "")
            else:
                await self._send_raw(writer, 200, b.body.encode())
        elif isinstance(b, ErrorIn200):
            payload = {**base, "error": {"code": b.code, "message": b.message}}
            if stream:
                await self._start_stream(writer)
                await self._event(writer, payload)
                await self._chunk(writer, "")
            else:
                await self._send_json(writer, 200, payload)
        elif isinstance(b, StallAfterHeaders):
            if stream:
                await self._start_stream(writer)
            else:
                await self._write(writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
            await self._pause(b.seconds, reader)
            raise _Disconnected
        elif isinstance(b, StalledBody):
            if stream:
                await self._start_stream(writer)
                await self._event(writer, {**base, "choices": [{"index": 0, "delta": {"content": b.text}}]})
            else:
                full = json.dumps({**base, "choices": [{"message": {"content": b.text}}]}).encode()
                await self._write(
                    writer,
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(full)}\r\n\r\n".encode()
                    + full[: len(full) // 2],
                )
            await self._pause(b.seconds, reader)
            raise _Disconnected
        elif isinstance(b, MidStreamError):
            if not stream:
                payload = {**base, "choices": [{"message": {"content": b.text_before}, "finish_reason": "error"}]}
                await self._send_json(writer, 200, payload)
                return
            await self._start_stream(writer)
            await self._event(writer, {**base, "choices": [{"index": 0, "delta": {"content": b.text_before}}]})
            await self._event(
                writer,
                {
                    **base,
                    "error": {"code": "server_error", "message": b.message},
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                },
            )
            await self._chunk(writer, "")
        else:
            await self._reply(reader, writer, base, stream, b)

    async def _reply(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, base: dict[str, Any], stream: bool, r: Reply
    ) -> None:
        usage: dict[str, Any] = {
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        }
        if r.cost is not None:
            usage["cost"] = r.cost
        await self._pause(r.latency_s, reader)
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": r.text}
            if r.reasoning:
                message["reasoning"] = r.reasoning
            payload = {**base, "choices": [{"index": 0, "message": message, "finish_reason": r.finish_reason}]}
            if r.usage:
                payload["usage"] = usage
            await self._send_json(writer, 200, payload)
            return
        await self._start_stream(writer)
        for _ in range(r.keepalives):
            await self._chunk(writer, ": OPENROUTER PROCESSING\n\n")
        pieces = _split(r.text, r.chunks)
        if r.reasoning:
            await self._event(writer, {**base, "choices": [{"index": 0, "delta": {"content": "", "reasoning": r.reasoning}}]})
        for piece in pieces:
            await self._pause(r.chunk_delay_s, reader)
            await self._event(writer, {**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
        final: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": r.finish_reason}]}
        if r.usage:
            final["usage"] = usage
        await self._event(writer, final)
        await self._chunk(writer, "data: [DONE]\n\n")
        await self._chunk(writer, "")


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]
