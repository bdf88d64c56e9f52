"""Client-side rate limits (`--rpm`, `--tpm`), so a build stays under a provider's quota instead of
living on 429s. Requests are spaced evenly (no burst at the top of each minute); tokens come from a
bucket that refills at tpm/60 per second and is corrected with the real usage after each call."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.tpm = tpm
        self._next_start = 0.0
        self._tokens = float(tpm or 0)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self.interval or self.tpm)

    def _refill(self) -> None:
        now = time.monotonic()
        if self.tpm:
            self._tokens = min(float(self.tpm), self._tokens + (now - self._stamp) * self.tpm / 60.0)
        self._stamp = now

    async def acquire(self, tokens: int) -> None:
        """Wait until one more request of about `tokens` tokens fits both limits."""
        if not self.active:
            return
        async with self._lock:
            now = time.monotonic()
            if self.interval:
                wait = self._next_start - now
                if wait > 0:
                    await asyncio.sleep(wait)
                self._next_start = max(now, self._next_start) + self.interval
            if self.tpm:
                need = min(float(tokens), float(self.tpm))  # a huge request waits for a full bucket
                self._refill()
                while self._tokens < need:
                    await asyncio.sleep((need - self._tokens) * 60.0 / self.tpm)
                    self._refill()
                self._tokens -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the bucket once the server has reported what a call really used."""
        if self.tpm and actual:
            self._tokens -= actual - estimated
