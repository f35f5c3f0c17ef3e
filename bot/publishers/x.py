"""X (Twitter): tweepy v2 ``AsyncClient.create_tweet`` with OAuth 1.0a user context.

tweepy 4.17's ``AsyncClient`` always builds ``https://api.twitter.com`` URLs,
but uses ``client.session`` when set; when a ``base_url`` is configured we hand
it a session whose requests are rewritten to that host (after tweepy has
signed them for api.twitter.com, so the OAuth signature is the real one).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping

import aiohttp
from yarl import URL

from core import xlimits

from .base import (
    DEFAULT_RATE_LIMIT_WAIT,
    DEFAULT_TIMEOUT,
    AuthError,
    PostResult,
    PublishError,
    RateLimited,
    UsageCapped,
    Secret,
    TransientError,
    redact,
    short,
)

CREDENTIAL_NAMES = ("CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN", "ACCESS_TOKEN_SECRET")
TWITTER_HOST = "api.twitter.com"
DUPLICATE_MARKER = "duplicate content"


class _RewritingSession:
    """Looks like an ``aiohttp.ClientSession`` to tweepy; sends api.twitter.com requests to ``base_url``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str):
        self._session = session
        self._base = base_url.rstrip("/")

    def request(self, method: str, url: Any, **kwargs: Any):
        u = url if isinstance(url, URL) else URL(str(url))
        if u.host == TWITTER_HOST:
            target = self._base + u.raw_path
            if u.raw_query_string:
                target += "?" + u.raw_query_string
            url = URL(target, encoded=True)
        return self._session.request(method, url, **kwargs)

    async def close(self) -> None:  # tweepy never calls it on a session it was given
        pass


def rate_limit_reset(headers: Mapping[str, str], now: float | None = None) -> float:
    """The epoch time after which posting may work again.

    X sends the 15-minute window in ``x-rate-limit-*`` and, on the free and
    basic tiers, 24-hour user/app windows in ``x-user-limit-24hour-*`` and
    ``x-app-limit-24hour-*``; an exhausted 24-hour window wins.
    """
    now = time.time() if now is None else now
    resets: list[float] = []
    for prefix in ("x-user-limit-24hour", "x-app-limit-24hour"):
        if str(headers.get(f"{prefix}-remaining", "")).strip() == "0":
            try:
                resets.append(float(headers[f"{prefix}-reset"]))
            except (KeyError, ValueError):
                pass
    if not resets:
        try:
            resets.append(float(headers["x-rate-limit-reset"]))
        except (KeyError, ValueError):
            pass
    return max(resets) if resets else now + DEFAULT_RATE_LIMIT_WAIT


class XPublisher:
    platform = "x"

    def __init__(
        self,
        *,
        consumer_key: Secret,
        consumer_secret: Secret,
        access_token: Secret,
        access_token_secret: Secret,
        base_url: str | None = None,
        username: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self._creds = (consumer_key, consumer_secret, access_token, access_token_secret)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.username = username.lstrip("@") if username else None
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"XPublisher(base_url={self.base_url!r}, username={self.username!r})"

    def post_url(self, tweet_id: str) -> str:
        if self.username:
            return f"https://x.com/{self.username}/status/{tweet_id}"
        return f"https://x.com/i/web/status/{tweet_id}"

    def _err(self, cls: type[PublishError], message: str, **kw: Any) -> PublishError:
        return cls(redact(f"X: {message}", self._creds), platform="x", **kw)

    async def publish(self, text: str) -> PostResult:
        import tweepy
        from tweepy.asynchronous import AsyncClient

        ck, cs, at, ats = (c.get() for c in self._creds)
        client = AsyncClient(
            consumer_key=ck, consumer_secret=cs, access_token=at, access_token_secret=ats,
            return_type=dict, wait_on_rate_limit=False,
        )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
                client.session = _RewritingSession(session, self.base_url) if self.base_url else session
                response = await client.create_tweet(text=text, user_auth=True)
        except tweepy.TooManyRequests as exc:
            headers = exc.response.headers if exc.response is not None else {}
            problem = xlimits.usage_cap(await _body(exc.response))
            if problem is not None:
                until = xlimits.cap_ends(problem, headers, time.time())
                raise self._err(UsageCapped, f"{xlimits.describe(problem)}: X takes no posts from this app until "
                                f"{_fmt(until)}", until=until) from None
            daily = xlimits.daily_window_ends(headers)
            if daily is not None:  # the 24-hour post limit: hours away, not worth a retry loop
                raise self._err(UsageCapped, f"the 24-hour post limit is used up until {_fmt(daily)}",
                                until=daily) from None
            reset = rate_limit_reset(headers)
            raise self._err(RateLimited, f"rate limited until {_fmt(reset)}", reset_at=reset) from None
        except tweepy.Forbidden as exc:
            detail = "; ".join(exc.api_messages) or "403 Forbidden"
            if DUPLICATE_MARKER in detail.lower():
                return PostResult(platform="x", remote_id="", url=None, duplicate=True)
            raise self._err(AuthError, f"forbidden (check the app's write permission and the account): {short(detail)}", status=403) from None
        except tweepy.Unauthorized as exc:
            detail = "; ".join(exc.api_messages) or "401 Unauthorized"
            raise self._err(AuthError, f"credentials refused: {short(detail)}", status=401) from None
        except tweepy.TwitterServerError as exc:
            status = exc.response.status if exc.response is not None else None
            raise self._err(TransientError, f"server error {status}: {short('; '.join(exc.api_messages))}", status=status) from None
        except tweepy.HTTPException as exc:
            status = exc.response.status if exc.response is not None else None
            raise self._err(PublishError, f"refused ({status}): {short('; '.join(exc.api_messages) or 'no detail')}", status=status) from None
        except aiohttp.ClientResponseError as exc:
            # e.g. a non-JSON error page: tweepy fails to parse it before mapping the status
            raise self._status_error(exc.status, exc.headers or {}) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise self._err(TransientError, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise self._err(TransientError, f"connection failed: {type(exc).__name__}: {short(exc)}") from None
        except tweepy.TweepyException as exc:
            raise self._err(PublishError, f"{type(exc).__name__}: {short(exc)}") from None
        data = (response or {}).get("data") or {}
        tweet_id = str(data.get("id") or "")
        if not tweet_id:
            raise self._err(PublishError, f"unexpected answer (no tweet id): {short(response)}")
        return PostResult(platform="x", remote_id=tweet_id, url=self.post_url(tweet_id))

    def _status_error(self, status: int, headers: Mapping[str, str]) -> PublishError:
        if status == 429:
            reset = rate_limit_reset(headers)
            return self._err(RateLimited, f"rate limited until {_fmt(reset)}", reset_at=reset)
        if status in (401, 403):
            return self._err(AuthError, f"credentials refused ({status})", status=status)
        if status >= 500:
            return self._err(TransientError, f"server error {status}", status=status)
        return self._err(PublishError, f"refused ({status})", status=status)


async def _body(response) -> Any:
    """The JSON body of an error response tweepy has already read (None if it is not JSON)."""
    try:
        return await response.json(content_type=None)
    except Exception:
        return None


def _fmt(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
