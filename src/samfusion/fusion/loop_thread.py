"""An asyncio event loop in its own daemon thread, for callers that are not asyncio (ROS).

rclpy's executor is not an asyncio loop (Humble/Jazzy), so the fusion node runs the engine on
this loop and hands each request over with :meth:`LoopThread.submit`, which returns a
``concurrent.futures.Future``. Cancelling that future cancels the coroutine (and so its HTTP
calls). :meth:`stop` cancels whatever is still running, runs the given async clean-up (closing
the HTTP client), stops the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """Owns one event loop running forever in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "samfusion-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        self._stopped = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop from any thread."""
        if not self.running:
            coro.close()
            raise RuntimeError("the asyncio loop thread is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (not from the loop thread)."""
        return self.submit(coro).result(timeout_s)

    def stop(self, cleanup: Callable[[], Awaitable[None]] | None = None, timeout_s: float = 10.0) -> None:
        """Cancel running tasks, await ``cleanup()``, stop the loop and join the thread."""
        if self._stopped:
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if cleanup is not None:
                await cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass
        finally:
            self._stopped = True
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
