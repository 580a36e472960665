"""Gateway errors and the one table that maps each to an HTTP status."""

from __future__ import annotations

from modelyard.errors import ModelyardError


class GatewayError(ModelyardError):
    """An error answered to the caller as JSON ``{"error": {"type", "message"}}``."""

    status = 500


class Unauthorized(GatewayError):
    status = 401


class Forbidden(GatewayError):
    status = 403


class UnknownModel(GatewayError):
    status = 404


class BadRequest(GatewayError):
    status = 400


class PayloadTooLarge(GatewayError):
    status = 413


class RateLimited(GatewayError):
    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LimiterUnavailable(GatewayError):
    """The rate limiter's store (Redis) cannot be reached: limited keys fail closed."""

    status = 503


class NoHealthyUpstream(GatewayError):
    status = 503


class RouteNotFound(GatewayError):
    """No gateway endpoint at the requested path."""

    status = 404


class MethodNotAllowed(GatewayError):
    status = 405

    def __init__(self, message: str, allowed: str) -> None:
        super().__init__(message)
        self.allowed = allowed


class UpstreamFailed(GatewayError):
    """One model server did not answer usefully (connection error, timeout, 5xx, open circuit).

    Raised inside the gateway so the next upstream in the fallback order is tried; the caller
    sees ``NoHealthyUpstream`` once every upstream failed.
    """

    status = 503

    def __init__(
        self, message: str, *, upstream_status: int | None = None, upstream_s: float = 0.0
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.upstream_s = upstream_s  # time spent waiting on the upstream before giving up
