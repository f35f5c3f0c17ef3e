"""Bluesky: atproto's ``AsyncClient`` against the account's PDS.

``com.atproto.server.createSession`` (handle + app password), then
``com.atproto.repo.createRecord`` of an ``app.bsky.feed.post`` with ``text``
and ``createdAt``.

The session is kept: createSession has a small daily limit (reports range
from 10 to 100 a day), so the session (atproto's session string, with its PDS
from the account's DID document) is stored in ``<data_dir>/sessions/``,
readable by its owner only, and reused by the next post; atproto refreshes it
with the refresh token before it expires, and a refused session is refreshed
once, then replaced by a new login. Only a login the server refuses is an
error.

Exactly-once on retries: the record key (a TID) is chosen by us and reused
when the same text is published again by the same publisher after a failure;
before creating the record again we ask ``com.atproto.repo.getRecord`` whether
the earlier attempt got through (a timeout can hide a success), and if so
return that post with ``duplicate=True``.

Rich text: the record carries ``facets`` so that links, #tags and @mentions
are clickable (Bluesky does not detect them from ``text`` itself), built in
``build_facets`` with atproto's own port of the official TypeScript detector.
Facet indices are UTF-8 byte offsets into ``text``. A facet is never a reason
for a post to fail: whatever cannot be detected or resolved stays plain text.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import random
import os
import threading
import time
from pathlib import Path
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

log = logging.getLogger(__name__)

CREDENTIAL_NAMES = ("HANDLE", "APP_PASSWORD")
DEFAULT_BASE_URL = "https://bsky.social"
COLLECTION = "app.bsky.feed.post"
_AUTH_ERRORS = {
    "AuthenticationRequired", "InvalidToken", "ExpiredToken", "AccountTakedown",
    "AccountDeactivated", "AuthFactorTokenRequired", "InvalidPassword",
}
#: At most this many distinct @handles are resolved (one resolveHandle call each) per post.
MAX_MENTION_LOOKUPS = 10
_B32 = "234567abcdefghijklmnopqrstuvwxyz"
_tid_lock = threading.Lock()
_last_tid_us = 0
_clock_id = random.getrandbits(10)


def new_tid() -> str:
    """A fresh AT Protocol TID: 53 bits of microseconds and a 10-bit clock id, base32-sortable."""
    global _last_tid_us
    with _tid_lock:
        us = max(int(time.time() * 1_000_000), _last_tid_us + 1)
        _last_tid_us = us
    n = (us << 10) | _clock_id
    return "".join(_B32[(n >> (5 * i)) & 31] for i in range(12, -1, -1))


class BlueskyPublisher:
    platform = "bluesky"

    def __init__(self, *, handle: Secret, app_password: Secret, base_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, session_dir: Path | None = None):
        self._handle = handle
        self._password = app_password
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = float(timeout)
        self.session_dir = Path(session_dir) if session_dir is not None else None
        self._pending: dict[str, str] = {}  # sha256(text) -> rkey of an attempt whose outcome is unknown

    def __repr__(self) -> str:
        return f"BlueskyPublisher(base_url={self.base_url!r})"

    def _err(self, cls: type[PublishError], message: str, **kw: Any) -> PublishError:
        return cls(redact(f"Bluesky: {message}", (self._password,)), platform="bluesky", **kw)

    @staticmethod
    def post_url(handle: str, rkey: str) -> str:
        return f"https://bsky.app/profile/{handle}/post/{rkey}"

    async def publish(self, text: str) -> PostResult:
        from atproto_client import AsyncClient, models
        from atproto_client.request import AsyncRequest

        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        request = AsyncRequest(timeout=self.timeout)
        client = AsyncClient(base_url=self.base_url, request=request)
        sessions: list[Any] = []

        async def on_session(_event: Any, session: Any) -> None:
            sessions.append(session)

        client.on_session_change(on_session)
        try:
            stage = "login"
            await self._sign_in(client)
            did = sessions[-1].did
            handle = sessions[-1].handle or self._handle.get()
            rkey = self._pending.get(key)
            if rkey is not None:
                stage = "check"
                if await self._exists(client, models, did, rkey):
                    self._pending.pop(key, None)
                    return PostResult("bluesky", f"at://{did}/{COLLECTION}/{rkey}", self.post_url(handle, rkey), duplicate=True)
            else:
                rkey = new_tid()
            created_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            facets = await build_facets(client, text)
            try:
                record = models.AppBskyFeedPost.Record(text=text, created_at=created_at, facets=facets or None)
            except Exception as exc:  # pydantic validation, e.g. over 3,000 bytes
                raise self._err(PublishError, f"the post is not valid: {short(exc, 200)}") from None
            stage = "post"
            self._pending[key] = rkey
            data = models.ComAtprotoRepoCreateRecord.Data(repo=did, collection=COLLECTION, record=record, rkey=rkey)
            try:
                response = await client.com.atproto.repo.create_record(data)
            except Exception as exc:
                if not _session_refused(exc):
                    raise
                await self._renew(client)  # the stored session was refused: refresh, or log in again
                response = await client.com.atproto.repo.create_record(data)
            self._pending.pop(key, None)
            uri = response.uri
            rkey = uri.rsplit("/", 1)[-1] or rkey
            return PostResult("bluesky", uri, self.post_url(handle, rkey))
        except PublishError:
            raise
        except Exception as exc:
            raise self._map(exc, stage) from None
        finally:
            try:
                await request.close()
            except Exception:
                pass

    # --- the kept session -------------------------------------------------------

    def _session_file(self) -> Path | None:
        if self.session_dir is None:
            return None
        who = hashlib.sha256(f"{self.base_url} {self._handle.get().lower()}".encode()).hexdigest()[:20]
        return self.session_dir / f"bluesky-{who}.session"

    def _save(self, client: Any) -> None:
        path = self._session_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a session is a credential
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(client.export_session_string())
        os.replace(tmp, path)

    def _forget(self) -> None:
        path = self._session_file()
        if path is not None:
            path.unlink(missing_ok=True)

    async def _sign_in(self, client: Any) -> None:
        """The kept session when there is one (no createSession), else a login."""
        from atproto_client import SessionEvent

        async def keep(event: Any, _session: Any) -> None:
            if event in (SessionEvent.CREATE, SessionEvent.REFRESH):
                self._save(client)

        client.on_session_change(keep)
        path = self._session_file()
        stored = path.read_text(encoding="utf-8").strip() if path is not None and path.exists() else ""
        if stored:
            try:
                await client.login(session_string=stored, fetch_bsky_profile=False)
                return
            except Exception as exc:  # unreadable, or its refresh was refused: log in again
                log.info("Bluesky: the kept session is no longer usable (%s); logging in", type(exc).__name__)
                self._forget()
                client.update_base_url(self.base_url)
        await client.login(self._handle.get(), self._password.get(), fetch_bsky_profile=False)

    async def _renew(self, client: Any) -> None:
        try:
            await client._refresh_and_set_session()
        except Exception:
            self._forget()
            client.update_base_url(self.base_url)  # log in where the config says; the DID document moves us on
            await client.login(self._handle.get(), self._password.get(), fetch_bsky_profile=False)

    async def _exists(self, client: Any, models: Any, did: str, rkey: str) -> bool:
        from atproto_client.exceptions import BadRequestError, RequestErrorBase

        try:
            await client.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(repo=did, collection=COLLECTION, rkey=rkey)
            )
            return True
        except BadRequestError:  # RecordNotFound
            return False
        except RequestErrorBase as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return False
            raise

    def _map(self, exc: Exception, stage: str) -> PublishError:
        from atproto_client import exceptions as ex

        what = {"login": "login (createSession)", "check": "checking an earlier attempt", "post": "createRecord"}[stage]
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        error, message = _xrpc_error(response)
        detail = short(f"{error}: {message}" if message else (error or type(exc).__name__), 200)
        if isinstance(exc, ex.RateLimitExceededError):
            reset = exc.reset_at.timestamp() if exc.reset_at else None
            if reset is None and exc.retry_after is not None:
                reset = time.time() + exc.retry_after
            if reset is None:
                reset = time.time() + DEFAULT_RATE_LIMIT_WAIT
            return self._err(RateLimited, f"rate limited during {what} until "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(reset))}", reset_at=reset)
        if isinstance(exc, ex.InvokeTimeoutError):
            return self._err(TransientError, f"no answer within {self.timeout:g} s during {what}")
        if isinstance(exc, ex.UnauthorizedError) or (error in _AUTH_ERRORS):
            return self._err(AuthError, f"credentials refused during {what}: {detail}", status=status)
        if isinstance(exc, ex.RequestErrorBase) and status is not None and status >= 500:
            detail = f": {detail}" if error else ""
            return self._err(TransientError, f"server error {status} during {what}{detail}", status=status)
        if isinstance(exc, ex.NetworkError):  # transport failure, or 409/413 which atproto deems retryable
            cause = detail if response is not None else type(exc.__cause__ or exc).__name__
            return self._err(TransientError, f"network error during {what}: {cause}", status=status)
        if isinstance(exc, ex.RequestErrorBase):
            return self._err(PublishError, f"refused during {what} ({status}): {detail}", status=status)
        import httpx

        if isinstance(exc, (httpx.TransportError, OSError)):
            return self._err(TransientError, f"connection failed during {what}: {type(exc).__name__}")
        return self._err(PublishError, f"{what} failed: {type(exc).__name__}: {short(exc, 200)}")


async def build_facets(client: Any, text: str) -> list[Any]:
    """The ``app.bsky.richtext.facet`` list for ``text``, sorted by byte offset; ``[]`` if none.

    Detection is atproto's (``atproto_client.utils``, a port of ``detectFacets``
    in ``@atproto/api``, the rules documented at
    https://docs.bsky.app/docs/advanced-guides/post-richtext):

    - links: ``http(s)://...`` up to whitespace, and bare domains
      (``example.com/path``) whose TLD is a real one, sent as ``https://...``;
      a trailing ``.,;:!?`` and an unbalanced ``)`` are not part of the link;
    - tags: ``#word`` after whitespace or at the start, not only digits, at most
      64 graphemes, trailing punctuation dropped; ``tag`` is without the ``#``
      (``$TICKER`` cashtags come along as tags ``$TICKER``, as in the app);
    - mentions: ``@handle`` after whitespace, ``(`` or at the start, where the
      handle is a valid domain-like handle (X-style ``@dril`` is not, and costs
      nothing). Each distinct handle is resolved to a DID with
      ``com.atproto.identity.resolveHandle`` on the PDS; one that does not
      resolve stays plain text, and after any error other than "unknown
      handle" (timeout, 5xx, rate limit) no further handles are looked up.

    All offsets are UTF-8 byte offsets, as the lexicon requires. Never raises.
    """
    from atproto_client import models
    from atproto_client.exceptions import BadRequestError
    from atproto_client.utils import detect_facets, detect_mentions

    try:
        facets = list(detect_facets(text))
        mentions = detect_mentions(text)
    except Exception as exc:  # a detector bug must not stop the post
        log.warning("Bluesky: facet detection failed, posting plain text: %s", short(exc, 200))
        return []
    dids: dict[str, str | None] = {}  # lower-cased handle -> DID, None if it did not resolve
    lookups = True
    for mention in mentions:
        handle = mention.handle.lower()
        if lookups and handle not in dids and len(dids) < MAX_MENTION_LOOKUPS:
            try:
                response = await client.com.atproto.identity.resolve_handle(
                    models.ComAtprotoIdentityResolveHandle.Params(handle=handle))
                dids[handle] = response.did
            except BadRequestError:  # 400 "Unable to resolve handle"
                dids[handle] = None
            except Exception as exc:  # timeout, 5xx, 429...: stop asking, post anyway
                log.info("Bluesky: resolving @%s failed (%s); mentions left stay plain text",
                         handle, type(exc).__name__)
                dids[handle] = None
                lookups = False
        did = dids.get(handle)
        if did:
            try:
                facets.append(models.AppBskyRichtextFacet.Main(
                    features=[models.AppBskyRichtextFacet.Mention(did=did)],
                    index=models.AppBskyRichtextFacet.ByteSlice(byte_start=mention.byte_start,
                                                                byte_end=mention.byte_end)))
            except Exception:  # e.g. not a DID: leave the mention as text
                dids[handle] = None
    return sorted(facets, key=lambda facet: facet.index.byte_start)


def _session_refused(exc: Exception) -> bool:
    """The server no longer takes the session's access token."""
    error, _ = _xrpc_error(getattr(exc, "response", None))
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return error in ("ExpiredToken", "InvalidToken") or (status == 401 and error == "AuthenticationRequired")


def _xrpc_error(response: Any) -> tuple[str | None, str | None]:
    content = getattr(response, "content", None)
    error = getattr(content, "error", None)
    message = getattr(content, "message", None)
    if error is None and isinstance(content, dict):
        error, message = content.get("error"), content.get("message")
    return error, message
