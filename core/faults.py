"""Fault injection for crash tests: ``PARODYBOT_FAULT=<point>`` (or
``<point>:<n>``, the n-th time) SIGKILLs this process when it reaches
``point``, so a test can stop it exactly between two steps instead of
guessing with a timer."""
from __future__ import annotations

import logging
import os
import signal
from collections import Counter

FAULT_ENV = "PARODYBOT_FAULT"
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
