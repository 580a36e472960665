"""Small in-memory implementations of the gateway's ports (keys, inference log) for tests.

The ports are ours (``serving.gateway.ports``), so faking them is faking our own seam, not a
library. The rate limiter needs no fake: ``InProcessLimiter`` is already in memory.
"""

from __future__ import annotations

from monitoring.inference_log import FeedbackRecord, InferenceRecord
from serving.gateway.ports import ApiKey


class MemoryKeyStore:
    """Keys by their presented secret; ``authenticate`` counts calls."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = dict(keys)
        self.calls = 0

    async def authenticate(self, presented: str) -> ApiKey | None:
        self.calls += 1
        return self.keys.get(presented)


class MemoryLog:
    """Records kept in lists; ``close`` marks it closed (the app must flush before)."""

    def __init__(self) -> None:
        self.records: list[InferenceRecord] = []
        self.feedback: list[FeedbackRecord] = []
        self.closed = False

    async def write(self, record: InferenceRecord) -> None:
        assert not self.closed, "written after close"
        self.records.append(record)

    async def write_feedback(self, record: FeedbackRecord) -> None:
        assert not self.closed, "written after close"
        self.feedback.append(record)

    async def close(self) -> None:
        self.closed = True

    def routes_of(self, request_id: str) -> dict[str, InferenceRecord]:
        return {r.route: r for r in self.records if r.request_id == request_id}


ADMIN_KEY = "my_admin00000_secret-admin"
SCOPED_KEY = "my_scoped0000_secret-scoped"
LIMITED_KEY = "my_limited000_secret-limited"


def standard_keys(model: str) -> dict[str, ApiKey]:
    """An admin key, a key scoped to ``model`` and to ``other``, and a key limited to 1/s."""
    return {
        ADMIN_KEY: ApiKey("admin00000", "ops", None, admin=True),
        SCOPED_KEY: ApiKey("scoped0000", "team-a", frozenset({model, "other"})),
        LIMITED_KEY: ApiKey("limited000", "trial", frozenset({model}), rate_per_second=1.0),
    }
