"""What X's API means by a 429, for the source (reading) and the publisher (posting).

X answers 429 for two different things:

- a rate limit: ``x-rate-limit-reset`` (15-minute windows) or, on the free
  and basic tiers, ``x-user-limit-24hour-*`` / ``x-app-limit-24hour-*``; it
  ends at the reset the headers name;
- a usage cap: the body is a problem document, recorded from the real API as

      {"account_id": "...", "product_name": "standard-basic",
       "title": "UsageCapExceeded", "period": "Monthly", "scope": "Product",
       "detail": "Usage cap exceeded: Monthly product cap",
       "type": "https://api.twitter.com/2/problems/usage-capped"}

  while ``x-rate-limit-remaining`` still shows plenty. It ends with the
  billing period: X names no time, so a monthly cap holds until the first of
  next month (UTC); a daily one until the 24-hour reset the headers name, or
  a day.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

USAGE_CAP_TYPE = "https://api.twitter.com/2/problems/usage-capped"


def usage_cap(body: Any) -> dict | None:
    """The problem document when ``body`` says a usage cap is reached, else None."""
    if isinstance(body, dict) and (body.get("title") == "UsageCapExceeded" or body.get("type") == USAGE_CAP_TYPE):
        return body
    return None


def daily_window_ends(headers: Mapping[str, str]) -> float | None:
    """The reset of an exhausted 24-hour window (user or app), if one is."""
    resets = []
    for prefix in ("x-user-limit-24hour", "x-app-limit-24hour"):
        reset = str(headers.get(f"{prefix}-reset", "")).strip()
        if str(headers.get(f"{prefix}-remaining", "")).strip() == "0" and reset.isdigit():
            resets.append(float(reset))
    return max(resets) if resets else None


def cap_ends(problem: dict, headers: Mapping[str, str], now: float) -> float:
    """When a usage cap lifts (epoch seconds)."""
    daily = daily_window_ends(headers)
    if daily is not None:
        return daily
    period = str(problem.get("period") or "Monthly").lower()
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    if period.startswith("day") or period == "daily":
        return now + 24 * 3600
    first = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return following.timestamp()


def describe(problem: dict) -> str:
    return str(problem.get("detail") or problem.get("title") or "usage cap exceeded")
