"""Local stand-ins for the posting endpoints of X, Bluesky and Mastodon.

Real aiohttp servers on 127.0.0.1 with ephemeral ports (``aioresponses`` is
broken with aiohttp 3.14). Each records every request and answers with the
real endpoints' payloads. Failure modes are queued with ``fail_next(...)`` and
consumed one per request to the posting endpoint, in order:

- ``"rate_limit"``: 429 with the platform's reset header (``reset_at`` epoch,
  default now + 60 s);
- ``"unavailable"``: 503 (JSON body); ``"bad_gateway_html"``: 502 with an
  HTML body (what proxies send);
- ``"timeout"``: sleep ``delay`` seconds before answering (keep the client
  timeout below it); ``"timeout_after_commit"``: store the post, then sleep
  (the post went out but the answer is lost);
- ``"unauthorized"``: 401;
- X only: ``"duplicate"`` (403 duplicate content; also sent for real when the
  same text is posted twice), ``"forbidden"`` (403 not permitted),
  ``"usage_cap"`` (429 with the problem document X sends when the app's
  monthly cap is reached, recorded from the real API, while the 15-minute
  limit has plenty left), ``"daily_cap"`` (429 with the 24-hour
  ``x-user-limit-24hour-*`` headers at 0, reset at ``reset_at``).

Usage::

    async with FakeX(consumer_key="ck", ...) as x:
        x.fail_next("unavailable")
        ... target = {"platform": "x", "base_url": x.url, ...}
"""
from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
# Recorded from the real API (xdevplatform/xdk issue 25).
X_USAGE_CAP = {"account_id": "1234567890", "product_name": "standard-basic", "title": "UsageCapExceeded",
               "period": "Monthly", "scope": "Product", "detail": "Usage cap exceeded: Monthly product cap",
               "type": "https://api.twitter.com/2/problems/usage-capped"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] | None = None


RECORDED: Any = web.RequestKey("recorded", Recorded) if hasattr(web, "RequestKey") else "recorded"


@dataclass
class _Failure:
    mode: str
    reset_at: float | None = None


class _FakeServer:
    def __init__(self, *, delay: float = 2.0):
        self.delay = delay
        self.requests: list[Recorded] = []
        self._failures: list[_Failure] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- control -----------------------------------------------------------
    def fail_next(self, *modes: str, reset_at: float | None = None) -> None:
        for m in modes:
            self._failures.append(_Failure(m, reset_at))

    def _next_failure(self) -> _Failure | None:
        return self._failures.pop(0) if self._failures else None

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def _stall(self) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), self.delay)
        except asyncio.TimeoutError:
            pass

    # --- lifecycle ---------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> "_FakeServer":
        app = web.Application(middlewares=[self._record])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body = await request.read()
        rec = Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        ctype = request.headers.get("Content-Type", "")
        if body and "json" in ctype:
            try:
                rec.json = json.loads(body)
            except ValueError:
                pass
        elif body and "x-www-form-urlencoded" in ctype:
            rec.form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        elif body and "multipart/form-data" in ctype:
            rec.form = {}
        self.requests.append(rec)
        request[RECORDED] = rec
        return await handler(request)


def _jwt(payload: dict[str, Any]) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'typ': 'at+jwt', 'alg': 'ES256K'})}.{b64(payload)}.c2lnbmF0dXJl"


# =========================================================================== X
# What each service turns into a live mention (a notification to that account).
# X: twitter-text's validMentionOrList (preceding chars, @ or ＠, 1-20 of [A-Za-z0-9_],
# not followed by an at sign, a Latin accented letter or "://"); the "RT:" prefix case is left out.
X_MENTION = re.compile(r"(?:^|(?<=[^a-zA-Z0-9_!#$%&*@＠]))[@＠]([a-zA-Z0-9_]{1,20})(?![@＠À-ÖØ-öø-ÿ]|://)")
# Mastodon: Account::MENTION_RE, (?<![=/[:word:]])@(USERNAME_RE(@domain)?), case-insensitive.
MASTODON_MENTION = re.compile(r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*(?:@\w+(?:[.-]+\w+)*)?)", re.IGNORECASE)


class FakeX(_FakeServer):
    """``POST /2/tweets`` with OAuth 1.0a checking.

    The Authorization header must be ``OAuth`` with the expected consumer key
    and token; when the secrets are given too, the HMAC-SHA1 signature is
    verified against ``https://api.twitter.com/2/tweets`` (tweepy signs the
    real URL; the client rewrites the host afterwards).
    """

    def __init__(self, *, consumer_key: str, access_token: str, consumer_secret: str | None = None,
                 access_token_secret: str | None = None, delay: float = 2.0):
        super().__init__(delay=delay)
        self.consumer_key, self.access_token = consumer_key, access_token
        self.consumer_secret, self.access_token_secret = consumer_secret, access_token_secret
        self.tweets: dict[str, str] = {}
        self.mentions: dict[str, list[str]] = {}  # tweet id -> screen names X would notify
        self._ids = itertools.count(1790000000000000001)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2/tweets", self.create_tweet)]

    @staticmethod
    def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"title": title, "detail": detail, "type": "about:blank", "status": status},
                                 status=status, headers=headers)

    def _check_oauth(self, request: web.Request) -> str | None:
        from oauthlib.oauth1.rfc5849 import signature, utils

        auth = request.headers.get("Authorization", "")
        if not auth.startswith("OAuth "):
            return "no OAuth 1.0a Authorization header"
        params = dict(utils.parse_authorization_header(auth))
        if params.get("oauth_consumer_key") != self.consumer_key or params.get("oauth_token") != self.access_token:
            return "wrong consumer key or token"
        if self.consumer_secret is None or self.access_token_secret is None:
            return None
        collected = signature.collect_parameters(uri_query=request.query_string, headers={"Authorization": auth},
                                                 exclude_oauth_signature=True)
        base = signature.signature_base_string(
            request.method, signature.base_string_uri("https://api.twitter.com" + request.path),
            signature.normalize_parameters(collected))
        expected = signature.sign_hmac_sha1(base, self.consumer_secret, self.access_token_secret)
        return None if expected == utils.unescape(params.get("oauth_signature", "")) else "bad signature"

    async def create_tweet(self, request: web.Request) -> web.Response:
        problem = self._check_oauth(request)
        if problem:
            return self._problem(401, "Unauthorized", "Unauthorized")
        body = request[RECORDED].json or {}
        text = body.get("text")
        failure = self._next_failure()
        if failure is not None:
            mode = failure.mode
            if mode == "rate_limit":
                reset = int(failure.reset_at if failure.reset_at is not None else time.time() + 60)
                return self._problem(429, "Too Many Requests", "Too Many Requests", headers={
                    "x-rate-limit-limit": "100", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)})
            if mode == "usage_cap":
                return web.json_response(X_USAGE_CAP, status=429, headers={
                    "x-rate-limit-limit": "40000", "x-rate-limit-remaining": "39999",
                    "x-rate-limit-reset": str(int(time.time()) + 900)})
            if mode == "daily_cap":
                reset = int(failure.reset_at if failure.reset_at is not None else time.time() + 86400)
                return self._problem(429, "Too Many Requests", "Too Many Requests", headers={
                    "x-rate-limit-limit": "100", "x-rate-limit-remaining": "99",
                    "x-rate-limit-reset": str(int(time.time()) + 900),
                    "x-user-limit-24hour-limit": "17", "x-user-limit-24hour-remaining": "0",
                    "x-user-limit-24hour-reset": str(reset)})
            if mode == "unavailable":
                return self._problem(503, "Service Unavailable", "Service Unavailable")
            if mode == "bad_gateway_html":
                return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            if mode == "timeout":
                await self._stall()
                return self._problem(504, "Gateway Timeout", "too late: the client gave up")
            if mode == "unauthorized":
                return self._problem(401, "Unauthorized", "Unauthorized")
            elif mode == "duplicate":
                return self._problem(403, "Forbidden", DUPLICATE_DETAIL)
            elif mode == "forbidden":
                return self._problem(403, "Forbidden", "You are not permitted to perform this action.")
        if not isinstance(text, str):
            return self._problem(400, "Invalid Request", "One or more parameters to your request was invalid.")
        if text in self.tweets.values():
            return self._problem(403, "Forbidden", DUPLICATE_DETAIL)
        tweet_id = str(next(self._ids))
        self.tweets[tweet_id] = text
        self.mentions[tweet_id] = X_MENTION.findall(text)
        if failure is not None and failure.mode == "timeout_after_commit":
            await self._stall()
        return web.json_response({"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}},
                                 status=201)


# ===================================================================== Bluesky
class FakeBluesky(_FakeServer):
    """A PDS: createSession, refreshSession, createRecord (stores the record as
    sent), getRecord, and resolveHandle (the account's own handle plus those in
    ``handles``; any other is the real 400 "Unable to resolve handle").

    As the real servers do: createSession answers with the account's DID
    document, whose ``#atproto_pds`` service names the PDS to talk to from then
    on (``pds``: another FakeBluesky that holds the repo, as bsky.social's
    entryway names the account's own PDS); an access token past its life is
    refused with 400 ``ExpiredToken``; refreshSession swaps the refresh token
    for a new pair and the old one is spent."""

    def __init__(self, *, handle: str, password: str, did: str = "did:plc:fakeparodybot0000000000", delay: float = 2.0,
                 handles: dict[str, str] | None = None, pds: "FakeBluesky | None" = None):
        super().__init__(delay=delay)
        self.pds = pds
        self.refreshes: set[str] = set()
        self.expired: set[str] = set()
        self.handle, self.password, self.did = handle, password, did
        self.handles = {h.lower(): d for h, d in {**(handles or {}), handle: did}.items()}  # handle -> DID
        self.records: dict[str, dict[str, Any]] = {}  # rkey -> record
        self.sessions: set[str] = set()
        self._login_failures: list[_Failure] = []
        self._resolve_failures: list[_Failure] = []

    def fail_login_next(self, *modes: str, reset_at: float | None = None) -> None:
        for m in modes:
            self._login_failures.append(_Failure(m, reset_at))

    def fail_resolve_next(self, *modes: str, reset_at: float | None = None) -> None:
        """Failures for ``resolveHandle`` only (``fail_next`` is for createRecord)."""
        for m in modes:
            self._resolve_failures.append(_Failure(m, reset_at))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/xrpc/com.atproto.server.createSession", self.create_session),
            web.post("/xrpc/com.atproto.server.refreshSession", self.refresh_session),
            web.post("/xrpc/com.atproto.repo.createRecord", self.create_record),
            web.get("/xrpc/com.atproto.repo.getRecord", self.get_record),
            web.get("/xrpc/com.atproto.identity.resolveHandle", self.resolve_handle),
        ]

    @staticmethod
    def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": error, "message": message}, status=status, headers=headers)

    async def _failure_response(self, failure: _Failure | None) -> web.Response | None:
        if failure is None:
            return None
        if failure.mode == "rate_limit":
            reset = int(failure.reset_at if failure.reset_at is not None else time.time() + 60)
            return self._error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers={
                "ratelimit-limit": "30", "ratelimit-remaining": "0", "ratelimit-reset": str(reset),
                "ratelimit-policy": "30;w=300"})
        if failure.mode == "unavailable":
            return self._error(503, "InternalServerError", "Service Unavailable")
        if failure.mode == "bad_gateway_html":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
        if failure.mode == "unauthorized":
            return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
        if failure.mode == "timeout":
            await self._stall()
            return self._error(504, "UpstreamTimeout", "too late: the client gave up")
        return None

    async def create_session(self, request: web.Request) -> web.Response:
        resp = await self._failure_response(self._login_failures.pop(0) if self._login_failures else None)
        if resp is not None:
            return resp
        body = request[RECORDED].json or {}
        if body.get("identifier") not in (self.handle, self.did) or body.get("password") != self.password:
            return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
        return web.json_response(dict(self._new_session(), email="bot@example.com", emailConfirmed=True))

    def _new_session(self) -> dict:
        now = int(time.time())
        jti = hashlib.sha1(str(time.time_ns()).encode()).hexdigest()
        access = _jwt({"scope": "com.atproto.appPass", "sub": self.did, "iat": now, "exp": now + 7200,
                       "aud": "did:web:fake.pds", "jti": jti})
        refresh = _jwt({"scope": "com.atproto.refresh", "sub": self.did, "iat": now, "exp": now + 86400 * 60,
                        "aud": "did:web:fake.pds", "jti": jti})
        home = self.pds or self
        home.sessions.add(access)
        home.refreshes.add(refresh)  # the PDS refreshes its sessions
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.handle, "did": self.did, "active": True,
                "didDoc": {"@context": ["https://www.w3.org/ns/did/v1"], "id": self.did,
                           "alsoKnownAs": [f"at://{self.handle}"],
                           "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                        "serviceEndpoint": home.url}]}}

    async def refresh_session(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if token not in self.refreshes:
            return self._error(400, "ExpiredToken", "Token has expired")
        self.refreshes.discard(token)  # a refresh token is good for one refresh
        return web.json_response(self._new_session())

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is past its life (the refresh tokens still work)."""
        self.expired |= self.sessions

    def revoke_sessions(self) -> None:
        """The account's sessions are revoked (app password changed): only a new login helps."""
        self.expired |= self.sessions
        self.refreshes.clear()

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer "):] in self.sessions

    async def create_record(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")[len("Bearer "):]
        if token in self.expired:
            return self._error(400, "ExpiredToken", "Token has expired")
        if not self._authorized(request):
            return self._error(401, "AuthenticationRequired", "Authentication Required")
        failure = self._next_failure()
        resp = await self._failure_response(failure)
        if resp is not None:
            return resp
        body = request[RECORDED].json or {}
        record = body.get("record") or {}
        if body.get("repo") not in (self.did, self.handle) or body.get("collection") != "app.bsky.feed.post":
            return self._error(400, "InvalidRequest", "bad repo or collection")
        if record.get("$type") != "app.bsky.feed.post" or not isinstance(record.get("text"), str) \
                or not isinstance(record.get("createdAt"), str):
            return self._error(400, "InvalidRequest", "Invalid app.bsky.feed.post record")
        rkey = body.get("rkey") or f"3l{len(self.records):011d}"
        if rkey in self.records:
            return self._error(400, "InvalidRequest", "Record already exists")
        self.records[rkey] = record
        if failure is not None and failure.mode == "timeout_after_commit":
            await self._stall()
        return web.json_response({
            "uri": f"at://{self.did}/app.bsky.feed.post/{rkey}",
            "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
            "commit": {"cid": "bafyreibcommit", "rev": "3l000000000000"},
            "validationStatus": "valid",
        })

    async def resolve_handle(self, request: web.Request) -> web.Response:
        resp = await self._failure_response(self._resolve_failures.pop(0) if self._resolve_failures else None)
        if resp is not None:
            return resp
        did = self.handles.get(request.query.get("handle", "").lower())
        if did is None:
            return self._error(400, "InvalidRequest", "Unable to resolve handle")
        return web.json_response({"did": did})

    async def get_record(self, request: web.Request) -> web.Response:
        q = request.query
        rkey = q.get("rkey", "")
        if q.get("collection") != "app.bsky.feed.post" or rkey not in self.records:
            return self._error(400, "RecordNotFound", f"Could not locate record: at://{q.get('repo')}/{q.get('collection')}/{rkey}")
        return web.json_response({"uri": f"at://{self.did}/app.bsky.feed.post/{rkey}",
                                  "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                                  "value": self.records[rkey]})


# ==================================================================== Mastodon
class FakeMastodon(_FakeServer):
    """``POST /api/v1/statuses`` with a bearer token and Idempotency-Key support;
    ``GET /api/v1/instance`` and ``/api/v2/instance`` for clients that ask."""

    def __init__(self, *, token: str, delay: float = 2.0, username: str = "parody"):
        super().__init__(delay=delay)
        self.token, self.username = token, username
        self.statuses: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._ids = itertools.count(113000000000000001)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/statuses", self.post_status),
            web.get("/api/v1/instance", self.instance),
            web.get("/api/v2/instance", self.instance),
        ]

    async def instance(self, request: web.Request) -> web.Response:
        host = self.url.split("//", 1)[-1]
        return web.json_response({"uri": host, "domain": host, "title": "fake", "version": "4.3.0",
                                  "api_versions": {"mastodon": 2},
                                  "configuration": {"statuses": {"max_characters": 500}}})

    async def post_status(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "The access token is invalid"}, status=401)
        failure = self._next_failure()
        if failure is not None:
            mode = failure.mode
            if mode == "rate_limit":
                reset = failure.reset_at if failure.reset_at is not None else time.time() + 60
                iso = _dt.datetime.fromtimestamp(reset, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                return web.json_response({"error": "Too many requests"}, status=429, headers={
                    "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": iso})
            if mode == "unavailable":
                return web.json_response({"error": "Service Unavailable"}, status=503)
            if mode == "bad_gateway_html":
                return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
            if mode == "unauthorized":
                return web.json_response({"error": "The access token is invalid"}, status=401)
            if mode == "timeout":
                await self._stall()
                return web.json_response({"error": "too late: the client gave up"}, status=504)
        form = request[RECORDED].form or {}
        text = form.get("status")
        if not text:
            return web.json_response({"error": "Validation failed: Text can't be blank"}, status=422)
        key = request.headers.get("Idempotency-Key")
        if key and key in self._by_key:
            return web.json_response(self.statuses[self._by_key[key]])
        sid = str(next(self._ids))
        status = {
            "id": sid,
            "created_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "in_reply_to_id": None, "in_reply_to_account_id": None, "sensitive": False, "spoiler_text": "",
            "visibility": form.get("visibility", "public"), "language": "en",
            "uri": f"{self.url}/users/{self.username}/statuses/{sid}",
            "url": f"{self.url}/@{self.username}/{sid}",
            "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
            "content": f"<p>{text}</p>", "reblog": None,
            "account": {"id": "1", "username": self.username, "acct": self.username,
                        "display_name": "Parody", "url": f"{self.url}/@{self.username}"},
            "media_attachments": [], "tags": [], "emojis": [], "card": None, "poll": None,
            "mentions": [{"acct": acct, "username": acct.split("@")[0]} for acct in MASTODON_MENTION.findall(text)],
        }
        self.statuses[sid] = status
        if key:
            self._by_key[key] = sid
        if failure is not None and failure.mode == "timeout_after_commit":
            await self._stall()
        return web.json_response(status)
