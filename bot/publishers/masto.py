"""Mastodon: Mastodon.py's ``status_post`` (synchronous, so run in a thread).

Built with ``ratelimit_method="throw"`` (Mastodon.py would otherwise sleep in
its thread on a 429) and ``version_check_mode="none"`` (no
``/api/v1/instance`` round trip before posting). Each post carries an
``Idempotency-Key`` derived from its text, so a retry after a lost answer
does not post twice (Mastodon remembers keys for an hour, per account).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from .base import (
    DEFAULT_RATE_LIMIT_WAIT,
    DEFAULT_TIMEOUT,
    AuthError,
    PostResult,
    PublishError,
    RateLimited,
    Secret,
    TransientError,
    redact,
    short,
)

CREDENTIAL_NAMES = ("ACCESS_TOKEN",)
VISIBILITIES = ("public", "unlisted", "private", "direct")


class MastodonPublisher:
    platform = "mastodon"

    def __init__(self, *, access_token: Secret, base_url: str, timeout: float = DEFAULT_TIMEOUT,
                 visibility: str | None = None):
        self._token = access_token
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.visibility = visibility

    def __repr__(self) -> str:
        return f"MastodonPublisher(base_url={self.base_url!r})"

    def _err(self, cls: type[PublishError], message: str, **kw: Any) -> PublishError:
        return cls(redact(f"Mastodon: {message}", (self._token,)), platform="mastodon", **kw)

    async def publish(self, text: str) -> PostResult:
        return await asyncio.to_thread(self._publish_sync, text)

    @staticmethod
    def idempotency_key(text: str) -> str:
        return "parodybot-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]

    def _publish_sync(self, text: str) -> PostResult:
        from mastodon import Mastodon
        from mastodon.errors import (
            MastodonAPIError,
            MastodonError,
            MastodonNetworkError,
            MastodonRatelimitError,
            MastodonServerError,
            MastodonUnauthorizedError,
        )

        api = Mastodon(
            api_base_url=self.base_url,
            access_token=self._token.get(),
            ratelimit_method="throw",
            request_timeout=self.timeout,
            version_check_mode="none",
        )
        try:
            status = api.status_post(text, visibility=self.visibility, idempotency_key=self.idempotency_key(text))
        except MastodonRatelimitError:
            reset = api.ratelimit_reset or (time.time() + DEFAULT_RATE_LIMIT_WAIT)
            raise self._err(RateLimited, "rate limited until "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(reset))}", reset_at=reset) from None
        except MastodonUnauthorizedError as exc:
            raise self._err(AuthError, f"access token refused (401): {_detail(exc)}", status=401) from None
        except MastodonServerError as exc:
            status = _status(exc)
            raise self._err(TransientError, f"server error {status}: {_detail(exc)}", status=status) from None
        except MastodonNetworkError as exc:
            timeout = "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower()
            msg = f"no answer within {self.timeout:g} s" if timeout else "connection failed"
            raise self._err(TransientError, msg) from None
        except MastodonAPIError as exc:
            status = _status(exc)
            if status == 403:
                raise self._err(AuthError, f"forbidden (403; does the token have the write:statuses scope?): {_detail(exc)}", status=403) from None
            if status == 429:  # defensive: Mastodon.py maps 429 itself
                raise self._err(RateLimited, "rate limited", reset_at=time.time() + DEFAULT_RATE_LIMIT_WAIT) from None
            raise self._err(PublishError, f"refused ({status}): {_detail(exc)}", status=status) from None
        except MastodonError as exc:
            raise self._err(PublishError, f"{type(exc).__name__}: {short(exc, 200)}") from None
        finally:
            try:
                api.session.close()
            except Exception:
                pass
        status_id = str(status.get("id") or "")
        if not status_id:
            raise self._err(PublishError, "unexpected answer (no status id)")
        return PostResult("mastodon", status_id, status.get("url") or status.get("uri"))


def _status(exc: Exception) -> int | None:
    args = getattr(exc, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], int) else None


def _detail(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 4 and args[3]:
        return short(args[3], 200)
    if len(args) >= 3 and args[2]:
        return short(args[2], 200)
    return "no detail"
