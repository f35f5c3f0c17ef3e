"""Publishers: X, Bluesky, Mastodon and the outbox, behind one interface.

    publisher = make_publisher({"platform": "x", "credentials": "DRIL_X"}, os.environ, data_dir)
    result = await publish_with_retry(publisher, text)

A target is a dict from the persona's configuration:

- ``platform``: ``"x"`` (alias ``"twitter"``), ``"bluesky"`` (``"bsky"``),
  ``"mastodon"``, ``"outbox"`` (the default);
- ``credentials``: the prefix of the environment variables holding secrets:
  X ``<P>_CONSUMER_KEY``, ``<P>_CONSUMER_SECRET``, ``<P>_ACCESS_TOKEN``,
  ``<P>_ACCESS_TOKEN_SECRET``; Bluesky ``<P>_HANDLE``, ``<P>_APP_PASSWORD``;
  Mastodon ``<P>_ACCESS_TOKEN``;
- ``base_url``: API host (X: default api.twitter.com; Bluesky: the PDS,
  default https://bsky.social; Mastodon: the instance, required);
- optional: ``timeout`` (seconds per request, default 30), ``username``
  (X, for nicer URLs), ``visibility`` (Mastodon), ``persona`` (outbox records).

Only this package's light modules are imported here; tweepy, atproto and
Mastodon.py are imported when a publisher for them is built or used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .base import (
    DEFAULT_TIMEOUT,
    AuthError,
    CredentialsMissing,
    PostResult,
    Publisher,
    PublishConfigError,
    PublishError,
    RateLimited,
    UsageCapped,
    Secret,
    TransientError,
    publish_with_retry,
    read_credentials,
)
from .outbox import OutboxPublisher

PLATFORMS = ("x", "bluesky", "mastodon", "outbox")
_ALIASES = {"twitter": "x", "bsky": "bluesky", "masto": "mastodon", "dry_run": "outbox", "dry-run": "outbox"}

__all__ = [
    "AuthError", "CredentialsMissing", "OutboxPublisher", "PLATFORMS", "PostResult", "PublishConfigError",
    "PublishError", "Publisher", "RateLimited", "TransientError", "UsageCapped", "make_publisher", "normalize_platform",
    "Secret", "publish_with_retry", "read_credentials", "required_env",
]


def normalize_platform(name: object) -> str:
    p = str(name or "outbox").strip().lower()
    p = _ALIASES.get(p, p)
    if p not in PLATFORMS:
        raise PublishConfigError(f"unknown publish platform {name!r}: use one of {', '.join(PLATFORMS)}")
    return p


def required_env(target: Mapping[str, Any]) -> list[str]:
    """The environment variable names a target needs (for `config check` and docs)."""
    platform = normalize_platform(target.get("platform"))
    names = {
        "x": ("CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN", "ACCESS_TOKEN_SECRET"),
        "bluesky": ("HANDLE", "APP_PASSWORD"),
        "mastodon": ("ACCESS_TOKEN",),
        "outbox": (),
    }[platform]
    prefix = target.get("credentials")
    return [f"{prefix}_{n}" for n in names] if names else []


def _timeout(target: Mapping[str, Any], platform: str) -> float:
    value = target.get("timeout", DEFAULT_TIMEOUT)
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = -1.0
    if not t > 0:
        raise PublishConfigError(f"{platform}: `timeout` must be a positive number of seconds, got {value!r}", platform=platform)
    return t


def _base_url(target: Mapping[str, Any], platform: str, *, required: bool = False) -> str | None:
    url = target.get("base_url") or None
    if url is None:
        if required:
            raise PublishConfigError(
                f"{platform}: the publish target needs `base_url`, the instance URL (for example https://mastodon.social)",
                platform=platform,
            )
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PublishConfigError(f"{platform}: `base_url` must be an http(s) URL, got {url!r}", platform=platform)
    return url.rstrip("/")


def make_publisher(target: Mapping[str, Any], env: Mapping[str, str], data_dir: Path) -> Publisher:
    """Build the publisher for one target. Raises ``PublishConfigError``
    (``CredentialsMissing`` naming the missing variables) when it cannot."""
    platform = normalize_platform(target.get("platform"))
    if platform == "outbox":
        return OutboxPublisher(data_dir, persona=target.get("persona"), guild_id=target.get("guild_id"))
    timeout = _timeout(target, platform)
    if platform == "x":
        from .x import CREDENTIAL_NAMES, XPublisher

        c = read_credentials(env, target.get("credentials"), CREDENTIAL_NAMES, platform="x")
        return XPublisher(
            consumer_key=c["CONSUMER_KEY"], consumer_secret=c["CONSUMER_SECRET"],
            access_token=c["ACCESS_TOKEN"], access_token_secret=c["ACCESS_TOKEN_SECRET"],
            base_url=_base_url(target, platform), username=target.get("username"), timeout=timeout,
        )
    if platform == "bluesky":
        from .bluesky import CREDENTIAL_NAMES, BlueskyPublisher

        c = read_credentials(env, target.get("credentials"), CREDENTIAL_NAMES, platform="bluesky", public=("HANDLE",))
        return BlueskyPublisher(handle=c["HANDLE"], app_password=c["APP_PASSWORD"],
                                base_url=_base_url(target, platform), timeout=timeout,
                                session_dir=Path(data_dir) / "sessions")
    from .masto import CREDENTIAL_NAMES, VISIBILITIES, MastodonPublisher

    base_url = _base_url(target, platform, required=True)
    visibility = target.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        raise PublishConfigError(f"mastodon: `visibility` must be one of {', '.join(VISIBILITIES)}, got {visibility!r}",
                                 platform=platform)
    c = read_credentials(env, target.get("credentials"), CREDENTIAL_NAMES, platform="mastodon")
    assert base_url is not None
    return MastodonPublisher(access_token=c["ACCESS_TOKEN"], base_url=base_url, timeout=timeout, visibility=visibility)
