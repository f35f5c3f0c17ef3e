"""Local fakes of the read endpoints the sources use: X API v2, Bluesky AppView,
Mastodon. Real HTTP servers on 127.0.0.1 (a thread each), so the real client
libraries (tweepy / requests, atproto / httpx, Mastodon.py / requests) are
exercised end to end. Every request is recorded for assertions.

Also :func:`block_internet`: any connection to a host other than localhost
fails, so a test that would reach the internet fails loudly.
"""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def block_internet(monkeypatch) -> None:
    """Make every connection to a non-local host raise (pytest ``monkeypatch``)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_HOSTS and host is not None:
            raise OSError(f"tests may not reach the internet (tried to resolve {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOCAL_HOSTS:
            raise OSError(f"tests may not reach the internet (tried to connect to {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeHTTPServer:
    """A JSON HTTP server in a thread; subclasses answer in ``route``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                rec = Recorded("GET", parts.path.rstrip("/") or "/", parse_qs(parts.query, keep_blank_values=True),
                               {k.lower(): v for k, v in self.headers.items()})
                with fake._lock:
                    fake.requests.append(rec)
                try:
                    reply = fake.route(rec)
                except Exception as e:  # a bug in the fake: say so loudly
                    reply = Reply(500, {"error": f"fake crashed: {e!r}"})
                body = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def route(self, req: Recorded) -> Reply:  # pragma: no cover - overridden; paths come without a trailing /
        return Reply(404, {"error": "not found"})

    def hits(self, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


# --- X API v2 ----------------------------------------------------------------


def x_tweet(tid: int, text: str, *, reply_to: str | None = None, retweet_of: str | None = None) -> dict:
    """A tweet object as GET /2/users/:id/tweets returns it. A post over 280
    characters comes as X sends one: ``text`` is its first 280 characters and
    ``note_tweet.text`` the whole post (only when tweet.fields asks for note_tweet)."""
    t: dict[str, Any] = {
        "id": str(tid),
        "text": text if len(text) <= 280 else text[:280],
        "edit_history_tweet_ids": [str(tid)],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_600_000_000 + tid)),
    }
    if reply_to:
        t["referenced_tweets"] = [{"type": "replied_to", "id": reply_to}]
        t["in_reply_to_user_id"] = "12"
    if retweet_of:
        t["referenced_tweets"] = [{"type": "retweeted", "id": retweet_of}]
    if len(text) > 280:
        t["note_tweet"] = {"text": text, "entities": {}}
    return t


# Recorded from the real API (xdevplatform/xdk issue 25): a usage cap, while the
# 15-minute rate limit is nowhere near.
X_USAGE_CAP = {"account_id": "1234567890", "product_name": "standard-basic", "title": "UsageCapExceeded",
               "period": "Monthly", "scope": "Product", "detail": "Usage cap exceeded: Monthly product cap",
               "type": "https://api.twitter.com/2/problems/usage-capped"}


class FakeXApi(FakeHTTPServer):
    """``/2/users/by/username/:u`` and ``/2/users/:id/tweets`` (newest first, meta.next_token)."""

    def __init__(self, *, token: str, users: dict[str, dict], timelines: dict[str, list[dict]],
                 rate_limit_first: int = 0, reset_at: int | None = None, usage_capped: bool = False) -> None:
        super().__init__()
        self.usage_capped = usage_capped
        self.token = token
        self.users = users  # username (lower) -> user object
        self.timelines = timelines  # user id -> tweets, newest first
        self.rate_limit_left = rate_limit_first
        self.reset_at = reset_at

    def route(self, req: Recorded) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                               "detail": "Unauthorized"})
        limits = {"x-rate-limit-limit": "1500", "x-rate-limit-remaining": "1499",
                  "x-rate-limit-reset": str(self.reset_at or int(time.time()) + 900)}
        if req.path.startswith("/2/users/by/username/"):
            username = req.path.rsplit("/", 1)[1]
            user = self.users.get(username.lower())
            if user is None:
                return Reply(200, {"errors": [{
                    "value": username, "detail": f"Could not find user with username: [{username}].",
                    "title": "Not Found Error", "resource_type": "user", "parameter": "username",
                    "resource_id": username, "type": "https://api.twitter.com/2/problems/resource-not-found"}]},
                    limits)
            return Reply(200, {"data": user}, limits)
        parts = req.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["2", "users"] and parts[3] == "tweets":
            if self.usage_capped:
                return Reply(429, X_USAGE_CAP, dict(limits, **{"x-rate-limit-limit": "40000",
                                                              "x-rate-limit-remaining": "39999"}))
            if self.rate_limit_left > 0:
                self.rate_limit_left -= 1
                return Reply(429, {"title": "Too Many Requests", "detail": "Too Many Requests",
                                   "type": "about:blank", "status": 429},
                             dict(limits, **{"x-rate-limit-remaining": "0"}))
            tweets = list(self.timelines.get(parts[2], []))
            exclude = set((req.param("exclude") or "").split(","))
            if "retweets" in exclude:
                tweets = [t for t in tweets if not any(r["type"] == "retweeted" for r in t.get("referenced_tweets", []))]
            if "replies" in exclude:
                tweets = [t for t in tweets if not any(r["type"] == "replied_to" for r in t.get("referenced_tweets", []))]
            size = int(req.param("max_results") or 10)
            if not 5 <= size <= 100:
                return Reply(400, {"errors": [{"message": "max_results must be between 5 and 100"}],
                                   "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                                   "type": "https://api.twitter.com/2/problems/invalid-request"})
            token = req.param("pagination_token")
            start = int(token.removeprefix("7140dibdnow9c7btw4")) if token else 0
            page = tweets[start:start + size]
            wanted = set((req.param("tweet.fields") or "").split(","))
            page = [{k: v for k, v in t.items()
                     if k in ("id", "text", "edit_history_tweet_ids") or k in wanted} for t in page]
            meta: dict[str, Any] = {"result_count": len(page)}
            if page:
                meta["newest_id"], meta["oldest_id"] = page[0]["id"], page[-1]["id"]
            if start + size < len(tweets):
                meta["next_token"] = f"7140dibdnow9c7btw4{start + size}"
            body: dict[str, Any] = {"meta": meta}
            if page:
                body["data"] = page
            return Reply(200, body, limits)
        return Reply(404, {"title": "Not Found", "status": 404, "type": "about:blank"})


# --- Bluesky AppView ----------------------------------------------------------


def bsky_post(did: str, handle: str, n: int, text: str, *, reply: bool = False, mention: str | None = None,
              quote: dict | None = None) -> dict:
    """A PostView as getAuthorFeed returns it (app.bsky.feed.defs#postView). ``mention``:
    the text starts with that @handle, a mention facet over it (UTF-8 byte offsets);
    ``quote``: the post embeds another (app.bsky.embed.record, its #view on the PostView)."""
    uri = f"at://{did}/app.bsky.feed.post/3kq{n:010d}"
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "langs": ["en"],
                              "createdAt": f"2024-05-{1 + n % 28:02d}T12:00:00.000Z"}
    if reply:
        parent = {"uri": f"at://did:plc:other/app.bsky.feed.post/3kz{n:010d}",
                  "cid": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}
        record["reply"] = {"root": parent, "parent": parent}
    if mention:
        end = len(f"@{mention}".encode("utf-8"))
        record["facets"] = [{"$type": "app.bsky.richtext.facet", "index": {"byteStart": 0, "byteEnd": end},
                             "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"}]}]
    view: dict[str, Any] = {}
    if quote:
        record["embed"] = {"$type": "app.bsky.embed.record", "record": {"uri": quote["uri"], "cid": quote["cid"]}}
        view["embed"] = {"$type": "app.bsky.embed.record#view", "record": {
            "$type": "app.bsky.embed.record#viewRecord", "uri": quote["uri"], "cid": quote["cid"],
            "author": quote["author"], "value": quote["record"], "indexedAt": quote["indexedAt"]}}
    return view | {
        "uri": uri,
        "cid": "bafyreib2rxk3rh6kzwq7jv5ni7ltgvaedq6ah5w7mq3f2fvhxvr7lipqgi",
        "author": {"did": did, "handle": handle, "displayName": handle.split(".")[0],
                   "avatar": "https://cdn.bsky.app/img/avatar/plain/x/y@jpeg", "labels": [],
                   "createdAt": "2023-04-01T00:00:00.000Z"},
        "record": record,
        "replyCount": 0, "repostCount": 1, "likeCount": 5, "quoteCount": 0,
        "indexedAt": record["createdAt"], "labels": [],
    }


def bsky_repost_item(post: dict, by_did: str, by_handle: str) -> dict:
    return {"post": post, "reason": {"$type": "app.bsky.feed.defs#reasonRepost",
                                      "by": {"did": by_did, "handle": by_handle, "labels": []},
                                      "indexedAt": "2024-05-20T10:00:00.000Z"}}


class FakeBluesky(FakeHTTPServer):
    """``/xrpc/app.bsky.feed.getAuthorFeed`` with cursor pagination."""

    def __init__(self, feeds: dict[str, list[dict]], *, rate_limit_first: int = 0,
                 reset_at: int | None = None) -> None:
        super().__init__()
        self.feeds = feeds  # actor (handle or did) -> feed items, newest first
        self.rate_limit_left = rate_limit_first
        self.reset_at = reset_at

    @property
    def xrpc_url(self) -> str:
        return self.url + "/xrpc"

    def route(self, req: Recorded) -> Reply:
        if req.path != "/xrpc/app.bsky.feed.getAuthorFeed":
            return Reply(501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"})
        if self.rate_limit_left > 0:
            self.rate_limit_left -= 1
            return Reply(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                         {"ratelimit-limit": "3000", "ratelimit-remaining": "0",
                          "ratelimit-reset": str(self.reset_at or int(time.time()) + 300),
                          "ratelimit-policy": "3000;w=300"})
        actor = req.param("actor")
        if actor not in self.feeds:
            return Reply(400, {"error": "InvalidRequest", "message": "Profile not found"})
        items = list(self.feeds[actor])
        filt = req.param("filter") or "posts_with_replies"
        if filt == "posts_no_replies":
            items = [i for i in items if "reply" not in i["post"]["record"]]
        limit = int(req.param("limit") or 50)
        if not 1 <= limit <= 100:
            return Reply(400, {"error": "InvalidRequest", "message": "limit must be <= 100"})
        # Cursors are opaque to clients (the AppView's are timestamps plus a cid).
        token = req.param("cursor")
        start = int(base64.urlsafe_b64decode(token.encode()).decode().split("::")[1]) if token else 0
        page = items[start:start + limit]
        body: dict[str, Any] = {"feed": page}
        if start + limit < len(items):
            stamp = page[-1]["post"]["indexedAt"]
            body["cursor"] = base64.urlsafe_b64encode(f"{stamp}::{start + limit}".encode()).decode()
        return Reply(200, body)


# --- Mastodon -----------------------------------------------------------------


def masto_account(aid: str, username: str, domain: str) -> dict:
    return {
        "id": aid, "username": username, "acct": username, "display_name": username.title(),
        "locked": False, "bot": False, "discoverable": True, "group": False,
        "created_at": "2022-11-01T00:00:00.000Z", "note": "<p>posting</p>",
        "url": f"https://{domain}/@{username}", "uri": f"https://{domain}/users/{username}",
        "avatar": f"https://{domain}/avatars/original/missing.png", "avatar_static": f"https://{domain}/a.png",
        "header": f"https://{domain}/headers/original/missing.png", "header_static": f"https://{domain}/h.png",
        "followers_count": 10, "following_count": 3, "statuses_count": 100,
        "last_status_at": "2024-05-01", "emojis": [], "fields": [],
    }


def masto_status(sid: int, account: dict, html_content: str, *, reply_to: str | None = None,
                 reblog: dict | None = None, quote_of: dict | None = None) -> dict:
    """A status as the API returns it. A quote post (Mastodon 4.4+) carries the
    quoted status in ``quote`` and, first in its content, the ``quote-inline``
    fallback paragraph "RE: <link>" for servers that cannot show quotes."""
    domain = account["url"].split("/")[2]
    if quote_of is not None:
        link = quote_of["url"]
        html_content = (f'<p class="quote-inline">RE: <a href="{link}" rel="nofollow noopener" target="_blank">'
                        f'<span class="invisible">https://</span><span class="ellipsis">{link[8:38]}</span>'
                        f'<span class="invisible">{link[38:]}</span></a></p>' + html_content)
    status = {
        "id": str(sid), "created_at": f"2024-04-{1 + sid % 28:02d}T09:30:00.000Z",
        "in_reply_to_id": reply_to, "in_reply_to_account_id": "999" if reply_to else None,
        "sensitive": False, "spoiler_text": "", "visibility": "public", "language": "en",
        "uri": f"https://{domain}/users/{account['username']}/statuses/{sid}",
        "url": f"https://{domain}/@{account['username']}/{sid}",
        "replies_count": 0, "reblogs_count": 0, "favourites_count": 2, "edited_at": None,
        "content": "" if reblog else html_content, "reblog": reblog, "application": None,
        "account": account, "media_attachments": [], "mentions": [], "tags": [], "emojis": [],
        "card": None, "poll": None,
    }
    if quote_of is not None:
        status["quote"] = {"state": "accepted", "quoted_status": quote_of}
    return status


class FakeMastodon(FakeHTTPServer):
    """``/api/v1/instance``, ``/api/v2/instance``, ``/api/v1/accounts/lookup``,
    ``/api/v1/accounts/:id/statuses`` with ``Link`` header pagination (max_id)."""

    def __init__(self, domain: str, accounts: dict[str, dict], statuses: dict[str, list[dict]], *,
                 version: str = "4.3.2", rate_limit_first: int = 0) -> None:
        super().__init__()
        self.domain = domain
        self.accounts = accounts  # acct as looked up -> account
        self.statuses = statuses  # account id -> statuses, newest first (ids descending)
        self.version = version
        self.rate_limit_left = rate_limit_first

    def route(self, req: Recorded) -> Reply:
        if self.rate_limit_left > 0 and req.path.endswith("/statuses"):
            self.rate_limit_left -= 1
            reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 120))
            return Reply(429, {"error": "Too many requests"},
                         {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
        if req.path == "/api/v1/instance":
            return Reply(200, {"uri": self.domain, "title": "Fake", "short_description": "", "description": "",
                               "email": "", "version": self.version, "urls": {"streaming_api": f"wss://{self.domain}"},
                               "stats": {"user_count": 1, "status_count": 1, "domain_count": 1},
                               "languages": ["en"], "registrations": False, "contact_account": None, "rules": []})
        if req.path == "/api/v2/instance":
            return Reply(200, {"domain": self.domain, "title": "Fake", "version": self.version,
                               "source_url": "https://github.com/mastodon/mastodon", "description": "",
                               "api_versions": {"mastodon": 2}, "languages": ["en"],
                               "configuration": {"urls": {"streaming": f"wss://{self.domain}"},
                                                 "statuses": {"max_characters": 500}},
                               "registrations": {"enabled": False}, "contact": {"email": ""}, "rules": []})
        if req.path == "/api/v1/accounts/lookup":
            account = self.accounts.get(req.param("acct") or "")
            if account is None:
                return Reply(404, {"error": "Record not found"})
            return Reply(200, account)
        parts = req.path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "accounts"] and parts[4] == "statuses":
            if parts[3] not in self.statuses:
                return Reply(404, {"error": "Record not found"})
            items = list(self.statuses[parts[3]])
            truthy = ("1", "true", "True")
            if req.param("exclude_replies") in truthy:
                items = [s for s in items if s["in_reply_to_id"] is None]
            if req.param("exclude_reblogs") in truthy:
                items = [s for s in items if s["reblog"] is None]
            if req.param("max_id"):
                items = [s for s in items if int(s["id"]) < int(req.param("max_id"))]
            limit = min(int(req.param("limit") or 20), 40)
            page = items[:limit]
            headers = {}
            if page:
                base = f"{self.url}/api/v1/accounts/{parts[3]}/statuses"
                # As the real server does: a non-empty page always links a next one, and the
                # page after the last is [].
                links = [f'<{base}?{urlencode({"max_id": page[-1]["id"]})}>; rel="next"']
                links.append(f'<{base}?{urlencode({"min_id": page[0]["id"]})}>; rel="prev"')
                headers["Link"] = ", ".join(links)
            return Reply(200, page, headers)
        return Reply(404, {"error": "Not found"})
