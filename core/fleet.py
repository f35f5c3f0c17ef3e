"""Many workers on one queue: who is there (the registry) and who runs what (leases).

Both live in the queue engine's own key-value storage (Huey's put / peek,
``put_if_empty`` and counters), so they work the same on SQLite (one machine)
and Redis (workers on rented GPUs): a worker shares nothing with the others
but the queue and the artifact store.

- **Registry.** A worker takes a slot number at start (a counter) and writes
  ``worker:<slot>`` every beat: its id, host, device and the jobs it runs.
  ``workers()`` reads them all; one that stopped beating shows as offline,
  and is dropped from the list an hour later.
- **Leases.** A worker that starts a job takes the job's lease for its next
  epoch (``put_if_empty`` on ``lease:<job>:<epoch>``: two workers can never
  both win) and renews it every beat. A lease not renewed for
  ``lease_seconds`` has lapsed: whichever live worker sees that first queues
  the job again (claimed once per epoch, so it is queued once), and the
  worker that takes it resumes from the checkpoint in the artifact store. A
  worker that finds its lease taken over stops its own copy of the run.

Clocks: a lease's end is wall-clock time written by its worker, so workers'
clocks must agree to within a fraction of ``lease_seconds`` (NTP does that).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

REGISTRY_SLOTS = "workers:slots"
REGISTRY_TOP = "workers:top"
LEASE_SLOTS = "leases:slots"
FORGET_OFFLINE_S = 3600  # an offline worker leaves /status after an hour
SCAN_BATCH = 500


class RunningElsewhere(Exception):
    """Another live worker holds this job's lease."""


def _get(huey, key: str):
    return huey.get(key, peek=True)


def _many(huey, keys: list[str]) -> dict:
    found = {}
    for i in range(0, len(keys), SCAN_BATCH):
        for key, value in huey.storage.peek_many(keys[i:i + SCAN_BATCH]).items():
            key = key.decode() if isinstance(key, bytes) else key
            found[key] = huey.serializer.deserialize(value)
    return found


def _slot_count(huey, counter: str) -> int:
    return int(huey.storage.incr(counter, 0))


# --- registry ----------------------------------------------------------------


def register(huey) -> int:
    """A new worker's slot in the registry."""
    return int(huey.storage.incr(REGISTRY_SLOTS, 1))


def beat(huey, slot: int, info: dict) -> None:
    huey.put(f"worker:{slot}", dict(info, at=time.time()))
    # Readers (the bot's /status) learn how many slots to read from a plain value, so a
    # read never writes to the queue's storage (a counter read is an increment by 0).
    # Two workers starting together may write it out of order; each beat sets it right.
    if slot > (huey.get(REGISTRY_TOP, peek=True) or 0):
        huey.put(REGISTRY_TOP, slot)


def sign_off(huey, slot: int, info: dict) -> None:
    """A worker that stops cleanly says so: it shows as stopped, not as lost."""
    beat(huey, slot, dict(info, stopped=True, running=[]))


def workers(huey, fresh_s: float) -> list[dict]:
    """Every known worker, newest first, each with ``online`` and ``age_s``."""
    now = time.time()
    found = _many(huey, [f"worker:{n}" for n in range(1, (huey.get(REGISTRY_TOP, peek=True) or 0) + 1)])
    out = []
    for key, info in found.items():
        age = now - info.get("at", 0)
        if age > FORGET_OFFLINE_S:
            huey.delete(key)
            continue
        out.append(dict(info, age_s=round(age, 1), online=age < fresh_s and not info.get("stopped")))
    return sorted(out, key=lambda w: (not w["online"], w.get("id", "")))


# --- leases --------------------------------------------------------------------


@dataclass
class Lease:
    job: str
    epoch: int
    worker: str


def _lease_key(job: str) -> str:
    return f"lease:{job}"


def take(huey, job: str, worker: str, task: str, payload: dict, seconds: float) -> Lease:
    """Take the job's lease, or raise RunningElsewhere when a live worker holds it."""
    current = _get(huey, _lease_key(job))
    now = time.time()
    if current and not current.get("ended") and current["worker"] != worker and current["until"] > now:
        raise RunningElsewhere(current["worker"])
    epoch = (current or {}).get("epoch", 0) + 1
    if not huey.put_if_empty(f"{_lease_key(job)}:{epoch}", worker):
        raise RunningElsewhere("another worker took it at the same moment")
    slot = (current or {}).get("slot") or int(huey.storage.incr(LEASE_SLOTS, 1))
    huey.put(f"lease-slot:{slot}", job)
    huey.put(_lease_key(job), {"job": job, "epoch": epoch, "worker": worker, "until": now + seconds,
                               "seconds": seconds, "task": task, "payload": payload, "slot": slot})
    return Lease(job, epoch, worker)


def renew(huey, lease: Lease) -> bool:
    """Push the lease's end on; False when it was taken over (this worker must stop the run)."""
    current = _get(huey, _lease_key(lease.job))
    if not current or current["epoch"] != lease.epoch or current["worker"] != lease.worker:
        return False
    current["until"] = time.time() + current["seconds"]
    huey.put(_lease_key(lease.job), current)
    return True


def release(huey, lease: Lease) -> None:
    """The job ended here: nobody is to queue it again."""
    current = _get(huey, _lease_key(lease.job))
    if current and current["epoch"] == lease.epoch:
        huey.put(_lease_key(lease.job), dict(current, ended=True))
        huey.delete(f"lease-slot:{current['slot']}")


def _claim_requeue(huey, lease: dict) -> bool:
    return bool(huey.put_if_empty(f"requeue:{lease['job']}:{lease['epoch']}", 1))


def lapsed(huey) -> list[dict]:
    """Leases not renewed in time whose job this caller is the one to queue again."""
    now = time.time()
    slots = _many(huey, [f"lease-slot:{n}" for n in range(1, _slot_count(huey, LEASE_SLOTS) + 1)])
    leases = _many(huey, [_lease_key(job) for job in slots.values()])
    return [lease for lease in leases.values()
            if not lease.get("ended") and lease["until"] < now and _claim_requeue(huey, lease)]


def abandon(huey, job: str, worker: str) -> bool:
    """The process that held ``job`` is known to be dead (its run marker's lock is free):
    end its lease now. True when this caller is the one to queue the job again
    (also when the job never had a lease)."""
    current = _get(huey, _lease_key(job))
    if not current:
        return True
    if current.get("ended") or (current["worker"] != worker and current["until"] > time.time()):
        return False
    huey.put(_lease_key(job), dict(current, until=0))
    return _claim_requeue(huey, current)
