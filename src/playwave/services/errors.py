"""Failures that services raise, each with the stable error code that clients see."""

from __future__ import annotations


class ServiceError(Exception):
    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    code = "BAD_REQUEST"
    status = 400


class InvalidApiKey(ServiceError):
    code = "INVALID_API_KEY"
    status = 401


class SessionNotFound(ServiceError):
    code = "SESSION_NOT_FOUND"
    status = 404


class AlreadyEnded(ServiceError):
    code = "ALREADY_ENDED"
    status = 409


class SessionEnded(ServiceError):
    code = "SESSION_ENDED"
    status = 410


class SessionEnding(ServiceError):
    code = "SESSION_ENDING"
    status = 410


class RateLimited(ServiceError):
    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(ServiceError):
    code = "SERVICE_UNAVAILABLE"
    status = 503
