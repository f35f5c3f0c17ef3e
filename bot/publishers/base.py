"""The publisher interface, its errors, and the retry loop.

Everything here is light: no network library is imported until a publisher
that needs one is built (see ``make_publisher`` in ``bot.publishers``).

Error model (what the scheduler does with each):

- ``RateLimited`` (HTTP 429): wait until ``reset_at`` (epoch seconds), then
  try again;
- ``TransientError`` (5xx, timeouts, connection errors): retry with
  exponential backoff;
- ``AuthError`` (401/403 auth problems, missing credentials): do not retry;
  the caller pauses the persona and says so in the log channel;
- any other ``PublishError`` (e.g. 400/422: the platform refused this text):
  do not retry.

Every message is safe to show users: publishers build their own messages and
pass them through ``redact`` with the credential values they hold, and
credentials are kept in ``Secret`` objects whose ``repr``/``str`` is ``***``.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Mapping, Protocol, runtime_checkable

log = logging.getLogger(__name__)

#: Seconds added after a rate-limit reset time (resets are whole seconds).
RATE_LIMIT_MARGIN = 1.0
#: Seconds to wait on a 429 that carries no usable reset header.
DEFAULT_RATE_LIMIT_WAIT = 60.0
#: Default client timeout (seconds) for one HTTP request.
DEFAULT_TIMEOUT = 30.0


@dataclass
class PostResult:
    """What a publisher made.

    ``duplicate=True`` means this call did not create a new post because the
    platform already has it (X answered "duplicate content", or an earlier
    attempt whose answer was lost got through). The post counts as posted.
    ``remote_id`` and ``url`` then point at the existing post when the platform
    says which one (Bluesky, Mastodon), else ``remote_id`` is ``""`` and
    ``url`` is ``None`` (X does not say which tweet it was).
    """

    platform: str
    remote_id: str
    url: str | None
    duplicate: bool = False


class PublishError(Exception):
    """A post did not go out. ``str(exc)`` is safe to show users (no secrets)."""

    def __init__(self, message: str, *, platform: str | None = None, status: int | None = None):
        super().__init__(message)
        self.platform = platform
        self.status = status


class RateLimited(PublishError):
    """HTTP 429: try again after ``reset_at`` (epoch seconds)."""

    def __init__(self, message: str, *, reset_at: float, platform: str | None = None, status: int | None = 429):
        super().__init__(message, platform=platform, status=status)
        self.reset_at = float(reset_at)


class UsageCapped(PublishError):
    """The platform's usage cap for the app is reached (X's monthly post cap):
    nothing is retried before ``until`` (epoch seconds); the target is held."""

    def __init__(self, message: str, *, until: float, platform: str | None = None, status: int | None = 429):
        super().__init__(message, platform=platform, status=status)
        self.until = float(until)


class TransientError(PublishError):
    """5xx, timeout, connection error: worth retrying with backoff."""


class AuthError(PublishError):
    """The platform refused the credentials (401/403): pause the persona."""


class PublishConfigError(PublishError, ValueError):
    """The publish target in the configuration is unusable (says which key)."""


class CredentialsMissing(AuthError, PublishConfigError):
    """An environment variable named by a target's credentials prefix is unset.

    The message names the variables, never a value.
    """


@runtime_checkable
class Publisher(Protocol):
    platform: str

    async def publish(self, text: str) -> PostResult: ...


_REGISTERED: set[str] = set()


class Secret:
    """A credential value that never shows itself in repr/str/logs.

    Every value is also registered with ``SecretFilter``, which blanks it out
    of log records of the HTTP/OAuth libraries the publishers use (tweepy and
    oauthlib log request headers and OAuth parameters at DEBUG).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, *, register: bool = True):
        self._value = value
        if register and len(value) >= 3:
            _REGISTERED.add(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a queue by accident
        raise TypeError("Secret values cannot be pickled")


class SecretFilter(logging.Filter):
    """Replaces registered credential values and Authorization header values in log records."""

    _auth = re.compile(r"""(Authorization['"]?\s*[:=]\s*)(['"])(.*?)\2""", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        new = self._auth.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>{m.group(2)}", msg)
        new = redact(new, list(_REGISTERED))
        if new != msg:
            record.msg, record.args = new, None
        return True


_FILTER = SecretFilter()

#: Loggers of the libraries the publishers drive. Logger filters only see records
#: logged on that very logger, so each module's logger is named.
LIBRARY_LOGGERS = (
    "tweepy.asynchronous.client", "tweepy.client", "oauthlib.oauth1.rfc5849", "oauthlib.oauth1.rfc5849.signature",
    "httpx", "httpcore.http11", "httpcore.connection", "urllib3.connectionpool", "mastodon", "atproto_client",
)


def protect_loggers(names: Iterable[str] = LIBRARY_LOGGERS) -> None:
    """Attach ``SecretFilter`` to each named logger (idempotent)."""
    for name in names:
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


protect_loggers()


def redact(message: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every credential value found in ``message`` by ``***``."""
    for s in secrets:
        value = s.get() if isinstance(s, Secret) else s
        if value and len(value) >= 3 and value in message:
            message = message.replace(value, "***")
    return message


def short(text: object, limit: int = 300) -> str:
    """One line of at most ``limit`` characters, for error messages."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def read_credentials(env: Mapping[str, str], prefix: object, names: Iterable[str], *, platform: str,
                     public: Iterable[str] = ()) -> dict[str, Secret]:
    """``{name: Secret}`` for ``<prefix>_<name>`` in ``env``.

    Names in ``public`` (e.g. a Bluesky handle) are required like the others
    but are not blanked out of logs.

    Raises ``CredentialsMissing`` naming every missing variable (never a value).
    """
    import re

    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise PublishConfigError(
            f"{platform}: the publish target needs `credentials`, the prefix of its environment "
            f"variables (for example DRIL_X); got {prefix!r}",
            platform=platform,
        )
    public = set(public)
    out: dict[str, Secret] = {}
    missing: list[str] = []
    for name in names:
        var = f"{prefix}_{name}"
        value = env.get(var)
        if value is None or not value.strip():
            missing.append(var)
        else:
            out[name] = Secret(value.strip(), register=name not in public)
    if missing:
        raise CredentialsMissing(
            f"{platform}: missing environment variable{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (set {'them' if len(missing) > 1 else 'it'} in the environment or .env)",
            platform=platform,
        )
    return out


async def publish_with_retry(
    publisher: Publisher,
    text: str,
    *,
    attempts: int = 4,
    backoff: float = 1.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.time,
    max_wait: float | None = None,
    max_backoff: float = 300.0,
) -> PostResult:
    """Publish ``text``, retrying what is worth retrying.

    - ``RateLimited``: sleep until ``reset_at`` (+1 s) per ``clock``, then try
      again; if that wait is longer than ``max_wait`` (when given) the error is
      raised at once so that the caller can reschedule instead of blocking.
    - ``TransientError``: sleep ``backoff * 2**(n-1)`` (capped at
      ``max_backoff``) after the n-th failure, then try again.
    - ``AuthError`` and any other ``PublishError``: raised at once.

    ``attempts`` counts calls to ``publisher.publish`` (rate-limit waits
    included). When they run out the last error is raised.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    platform = getattr(publisher, "platform", "?")
    last: PublishError | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await publisher.publish(text)
        except AuthError:
            raise
        except RateLimited as exc:
            last = exc
            if attempt == attempts:
                break
            wait = max(0.0, exc.reset_at - clock()) + RATE_LIMIT_MARGIN
            if max_wait is not None and wait > max_wait:
                raise
            log.warning("%s: rate limited (attempt %d/%d), waiting %.0f s: %s", platform, attempt, attempts, wait, exc)
            await sleep(wait)
        except TransientError as exc:
            last = exc
            if attempt == attempts:
                break
            wait = min(backoff * 2 ** (attempt - 1), max_backoff)
            log.warning("%s: transient error (attempt %d/%d), retrying in %.1f s: %s", platform, attempt, attempts, wait, exc)
            await sleep(wait)
    assert last is not None
    raise last
