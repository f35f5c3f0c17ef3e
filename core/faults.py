"""Fault injection for tests, so a test can stop a process exactly between two
steps instead of guessing with a timer:

- ``PARODYBOT_FAULT=<point>`` (or ``<point>:<n>``, the n-th time) SIGKILLs this
  process when it reaches ``point``;
- ``PARODYBOT_HOLD=<point>:<file>`` makes it wait at ``point``, the first time,
  until ``file`` exists (what it showed until then is what a member sees)."""
from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter

FAULT_ENV = "PARODYBOT_FAULT"
HOLD_ENV = "PARODYBOT_HOLD"
_reached: Counter = Counter()
log = logging.getLogger("parodybot.faults")


def fault(point: str) -> None:
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] == int(nth or 1):
        log.warning("fault injection: SIGKILL at %s (time %d)", point, _reached[point])
        os.kill(os.getpid(), signal.SIGKILL)


def hold(point: str) -> None:
    wanted = os.environ.get(HOLD_ENV)
    if not wanted:
        return
    name, _, release = wanted.partition(":")
    if name != point or _reached[f"hold {point}"]:
        return
    _reached[f"hold {point}"] += 1
    log.warning("fault injection: holding at %s until %s exists", point, release)
    while not os.path.exists(release):
        time.sleep(0.05)
