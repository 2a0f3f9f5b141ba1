"""Per-subscriber bounded queues: a slow WebSocket client loses its oldest frames, never stalls inference."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Deque, List, Optional


class Subscriber:
    """One client's queue; filled from the publish thread, emptied by the client's asyncio task."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxlen: int) -> None:
        self.loop = loop
        self.items: Deque[str] = collections.deque(maxlen=maxlen)
        self.dropped = 0
        self.sent = 0
        self.event = asyncio.Event()
        self._lock = threading.Lock()
        self._signalled = False

    def offer(self, item: str) -> bool:
        """Queue ``item`` (dropping the oldest when full); True when one was dropped."""
        with self._lock:
            dropped = len(self.items) == self.items.maxlen
            if dropped:
                self.dropped += 1
            self.items.append(item)
            wake = not self._signalled
            self._signalled = True
        if wake:  # one wake-up per batch: a stalled loop never piles up callbacks
            with contextlib.suppress(RuntimeError):  # a closed loop: that client is leaving
                self.loop.call_soon_threadsafe(self.event.set)
        return dropped

    async def next_batch(self, timeout: Optional[float] = None) -> List[str]:
        if timeout is None:
            await self.event.wait()
        else:
            try:
                await asyncio.wait_for(self.event.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        with self._lock:
            self.event.clear()
            self._signalled = False
            batch = list(self.items)
            self.items.clear()
        return batch


class Fanout:
    """The set of subscribers the publish thread writes to."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._subs: List[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        sub = Subscriber(loop, self.maxlen)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, item: str) -> int:
        """Offer ``item`` to every subscriber; returns how many dropped a frame to take it."""
        with self._lock:
            subs = list(self._subs)
        return sum(1 for s in subs if s.offer(item))

    def __len__(self) -> int:
        return len(self._subs)


__all__ = ["Subscriber", "Fanout"]
