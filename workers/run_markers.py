"""Run markers: <worker_dir>/runs/<task id>.json, one per job while it runs.

A worker that starts on a folder queues again the jobs whose markers it finds,
but only those whose worker is gone. Each marker is locked (``flock``) by the
process running its job for as long as it runs; the kernel drops the lock when
that process dies, however it dies. A marker whose lock is free belongs to a
dead worker; one whose lock is held belongs to a live one and is left alone.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator


class RunningElsewhere(Exception):
    """Another live process holds this job's marker: it is running the job now."""


@contextlib.contextmanager
def held(path: Path, record: dict) -> Iterator[None]:
    """Hold ``path`` (locked, with ``record`` in it) while the body runs the job."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunningElsewhere(path.stem) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode("utf-8"))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the lock goes: nobody re-queues a finished job
    finally:
        os.close(fd)


def abandoned(path: Path) -> dict | None:
    """The marker's record if its worker is gone, else None (live, finished, or half-written)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live worker runs it
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return None  # finished and removed while we opened it
        except FileNotFoundError:
            return None
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    if not data:
        return None  # its worker has only just made it
    return json.loads(data)
