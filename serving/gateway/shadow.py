"""Mirror requests to a shadow version in the background and compare its answers.

The copy starts as soon as the route is known and runs as a task the request never awaits: the
caller's answer and latency do not depend on the shadow, however slow or broken it is. Copies in
flight are capped (and the excess skipped, counted in the metrics) so a slow shadow cannot take
the connection pool or memory the live traffic needs. Once both answers are in, the shadow's is
logged beside the live one under the same request id, and their agreement is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from serving.gateway.errors import UpstreamFailed
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.recorder import Answered, InferenceRecorder, predictions_of
from serving.gateway.routing import SHADOW, Upstream
from serving.gateway.upstream import Forwarder

logger = logging.getLogger(__name__)


def answers_agree(live: list[Any] | None, shadow: list[Any] | None) -> bool:
    """Same predictions, row by row; floats equal to a relative 1e-6 (serialisation noise)."""
    if live is None or shadow is None or len(live) != len(shadow):
        return False
    return all(_same(a, b) for a, b in zip(live, shadow, strict=True))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class ShadowRunner:
    """Starts shadow copies and keeps their tasks until they finish."""

    def __init__(
        self,
        forwarder: Forwarder,
        recorder: InferenceRecorder,
        metrics: GatewayMetrics,
        *,
        max_in_flight: int = 32,
    ) -> None:
        self._forwarder = forwarder
        self._recorder = recorder
        self._metrics = metrics
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    def launch(
        self,
        upstream: Upstream,
        body: bytes,
        headers: Mapping[str, str],
        request_id: str,
        document: dict[str, Any],
    ) -> asyncio.Future[Answered | None] | None:
        """Send a copy to ``upstream`` now; returns the future the request path resolves with
        the live answer (None when there was none), or None when the copy was skipped."""
        if len(self._tasks) >= self.max_in_flight:
            self._metrics.observe_shadow(upstream.model, upstream.version, "skipped")
            return None
        live: asyncio.Future[Answered | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._run(upstream, body, headers, request_id, document, live))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live

    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self, grace_s: float) -> None:
        """Let copies in flight finish for up to ``grace_s``, then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(
        self,
        upstream: Upstream,
        body: bytes,
        headers: Mapping[str, str],
        request_id: str,
        document: dict[str, Any],
        live: asyncio.Future[Answered | None],
    ) -> None:
        started = time.perf_counter()
        timeout = self._forwarder.policy.shadow_timeout_s
        try:
            answer = await self._forwarder.forward(
                upstream, body, headers, started + timeout, attempts=1
            )
        except UpstreamFailed as exc:
            self._metrics.observe_shadow(upstream.model, upstream.version, "failed")
            logger.debug("shadow %s v%s: %s", upstream.model, upstream.version, exc.message)
            return
        except Exception:  # a shadow must never take anything down with it
            logger.exception("shadow copy to %s v%s failed", upstream.model, upstream.version)
            return
        latency_ms = (time.perf_counter() - started) * 1000
        shadow = Answered(
            request_id, upstream.model, upstream.version, SHADOW, document,
            answer.body, latency_ms, answer.status,
        )  # fmt: skip
        try:  # the request path always resolves it; the timeout only guards against a bug there
            primary = await asyncio.wait_for(live, self._forwarder.policy.budget_s + timeout)
        except TimeoutError:
            primary = None
        self._compare(primary, shadow)
        await self._recorder.put(shadow)

    def _compare(self, primary: Answered | None, shadow: Answered) -> None:
        if primary is None or primary.status != 200 or shadow.status != 200:
            return  # nothing comparable: only two real answers can agree or disagree
        live_predictions, shadow_predictions = (
            predictions_of(primary.body),
            predictions_of(shadow.body),
        )
        if live_predictions is None or shadow_predictions is None:
            return
        agree = answers_agree(live_predictions, shadow_predictions)
        outcome = "agree" if agree else "disagree"
        self._metrics.observe_shadow(shadow.model, shadow.version, outcome)
