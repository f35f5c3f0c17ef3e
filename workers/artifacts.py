"""Datasets and checkpoints that every worker can reach: the artifact store.

By default the worker's own data directory is the store (one machine, or
workers sharing a folder): nothing is copied. With ``[artifacts] url =
"s3://BUCKET/PREFIX"`` (AWS, or any S3-compatible server through
``endpoint_url``: MinIO, Cloudflare R2, Backblaze B2, ...), each artifact is
one tar object:

    <prefix>/datasets/<persona>.tar     the dataset, after every import
    <prefix>/checkpoint/<persona>.tar   the working checkpoint, when a run completes
    <prefix>/runs/<persona>.tar         the run in progress, at each of its saves,
                                        so another worker can resume it

An S3 PUT replaces an object whole, so a reader never sees half a checkpoint.
A worker keeps what it fetched in its data directory, where the rest of the
worker code finds it as ever, and fetches again only when the object's ETag
changed. Credentials come from the environment (boto3's ``AWS_ACCESS_KEY_ID``
and ``AWS_SECRET_ACCESS_KEY``, or an instance role): never from the config.

boto3 is the client: AWS's own, and the one every S3-compatible server
documents.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from core import faults
from core.contract import WorkFailed, check_persona_key

log = logging.getLogger("parodybot.artifacts")

KINDS = ("datasets", "checkpoint", "runs")
STAMP = ".artifact.json"  # the ETag of what a cached copy was fetched as (never uploaded)
RUN_SUFFIX = ".run"  # workers/finetune.py's run directory: checkpoint/<persona>.run


class ArtifactError(WorkFailed):
    """The artifact store could not be reached or refused us; worded for the operator."""


def local_path(worker_dir: Path, kind: str, persona: str) -> Path:
    persona = check_persona_key(persona)
    if kind == "datasets":
        return Path(worker_dir) / "datasets" / persona
    if kind == "checkpoint":
        return Path(worker_dir) / "checkpoint" / persona
    if kind == "runs":
        return Path(worker_dir) / "checkpoint" / (persona + RUN_SUFFIX)
    raise ValueError(f"unknown artifact kind {kind!r}")


class LocalArtifacts:
    """The data directory is the store: every worker that can see it sees everything."""

    shared = False

    def __init__(self, worker_dir: Path):
        self.worker_dir = Path(worker_dir)

    def fetch(self, kind: str, persona: str) -> bool:
        return local_path(self.worker_dir, kind, persona).exists()

    def publish(self, kind: str, persona: str) -> None:
        pass

    def remove(self, kind: str, persona: str) -> None:
        pass

    def describe(self) -> str:
        return f"the data directory {self.worker_dir}"


class S3Artifacts:
    shared = True

    def __init__(self, worker_dir: Path, url: str, *, endpoint_url: str = "", region: str = ""):
        import boto3
        from botocore.config import Config as BotoConfig

        bucket, _, prefix = url[len("s3://"):].partition("/")
        self.worker_dir = Path(worker_dir)
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )
        self._lock = threading.Lock()  # one transfer per artifact at a time in this process

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _key(self, kind: str, persona: str) -> str:
        name = f"{kind}/{check_persona_key(persona)}.tar"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn, *args, **kwargs):
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (ClientError, Boto3Error) as exc:  # upload_file wraps the ClientError in S3UploadFailedError
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code", "")
            else:
                code = (re.search(r"\((\w+)\) when calling", str(exc)) or re.search("()", "")).group(1) or "error"
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ArtifactError(f"the artifact store refused to {what} ({code}): check [artifacts] and the "
                                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of this worker") from None
        except BotoCoreError as exc:
            raise ArtifactError(f"the artifact store {self.describe()} could not {what}: {exc}") from None

    def fetch(self, kind: str, persona: str) -> bool:
        """Bring the artifact into the data directory unless the copy there is current.
        False when the store has none (a copy already here is left as it is)."""
        local = local_path(self.worker_dir, kind, persona)
        key = self._key(kind, persona)
        with self._lock:
            head = self._call("read", self.client.head_object, Bucket=self.bucket, Key=key)
            if head is None:
                return local.exists()
            etag = head["ETag"]
            if _stamp(local) == etag:
                return True
            self.worker_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.worker_dir, prefix=".fetch-"))  # same disk: the swap is a rename
            try:
                archive = tmp / "a.tar"
                self._call("download", self.client.download_file, self.bucket, key, str(archive))
                unpacked = tmp / "dir"
                with tarfile.open(archive) as tar:
                    tar.extractall(unpacked, filter="data")
                _fix_checkpoint_paths(unpacked)
                (unpacked / STAMP).write_text(json.dumps({"etag": etag}), encoding="utf-8")
                local.parent.mkdir(parents=True, exist_ok=True)
                old = local.with_name(local.name + ".replaced")
                shutil.rmtree(old, ignore_errors=True)
                if local.exists():
                    local.rename(old)
                unpacked.rename(local)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log.info("fetched %s %s from %s", kind, persona, self.describe())
            return True

    def publish(self, kind: str, persona: str) -> None:
        """Upload the artifact whole (a run mid-training: its last complete save)."""
        local = local_path(self.worker_dir, kind, persona)
        if not local.is_dir():
            return
        with self._lock, tempfile.TemporaryDirectory(dir=self.worker_dir, prefix=".publish-") as tmp:
            archive = Path(tmp) / "a.tar"
            if not _pack(local, archive, kind):
                log.info("%s %s changed while packing; the next save publishes it", kind, persona)
                return
            self._call("upload", self.client.upload_file, str(archive), self.bucket, self._key(kind, persona))
            head = self._call("read", self.client.head_object, Bucket=self.bucket, Key=self._key(kind, persona))
            if head:  # what we hold is what the store has: no need to fetch it back
                (local / STAMP).write_text(json.dumps({"etag": head["ETag"]}), encoding="utf-8")

    def remove(self, kind: str, persona: str) -> None:
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(kind, persona))


def open_artifacts(cfg) -> LocalArtifacts | S3Artifacts:
    art = cfg.artifacts
    if not art.url:
        return LocalArtifacts(cfg.worker_dir)
    return S3Artifacts(cfg.worker_dir, art.url, endpoint_url=art.endpoint_url, region=art.region)


def _stamp(local: Path) -> str | None:
    try:
        return json.loads((local / STAMP).read_text(encoding="utf-8"))["etag"]
    except (OSError, ValueError, KeyError):
        return None


def _checkpoint_files(folder: Path) -> list[Path] | None:
    """A run's files for its last complete save: the model files the ``checkpoint``
    state file names, and everything that is not a model file."""
    state = folder / "checkpoint"
    if not state.is_file():
        return sorted(p for p in folder.iterdir() if p.is_file() and p.name != STAMP)
    latest = None
    for line in state.read_text(encoding="utf-8").splitlines():
        if line.startswith("model_checkpoint_path:"):
            latest = Path(line.split(":", 1)[1].strip().strip('"')).name
    if latest is None:
        return None
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != STAMP
                  and (not p.name.startswith("model-") or p.name.split(".")[0] == latest)
                  and not p.name.startswith("events."))


def _pack(folder: Path, archive: Path, kind: str) -> bool:
    """Tar the folder; False when a save replaced files while we read them."""
    for _ in range(3):
        before = (folder / "checkpoint").read_bytes() if (folder / "checkpoint").is_file() else b""
        files = _checkpoint_files(folder)
        if files is None:
            return False
        try:
            with tarfile.open(archive, "w") as tar:
                for path in files:
                    tar.add(path, arcname=path.name)
                for sub in (p for p in folder.iterdir() if p.is_dir() and kind == "datasets"):
                    tar.add(sub, arcname=sub.name)  # datasets/<persona>/split/
        except FileNotFoundError:
            continue
        after = (folder / "checkpoint").read_bytes() if (folder / "checkpoint").is_file() else b""
        if before == after:
            return True
    return False


def _fix_checkpoint_paths(folder: Path) -> None:
    """gpt-2-simple's Saver writes absolute paths of the machine that saved into
    ``checkpoint``; here they must name this folder's files."""
    state = folder / "checkpoint"
    if not state.is_file():
        return
    lines = []
    for line in state.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model_checkpoint_path", "all_model_checkpoint_paths"):
            value = f' "{Path(value.strip().strip(chr(34))).name}"'
        lines.append(f"{key}{sep}{value}")
    state.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Publisher:
    """Publishes a run's saves in the background (uploading a 124M checkpoint takes a while;
    training goes on meanwhile). A save that comes while one uploads is published next;
    ``finish()`` waits for the last."""

    def __init__(self, artifacts, kind: str, persona: str, allowed=lambda: True):
        self.artifacts, self.kind, self.persona, self.allowed = artifacts, kind, persona, allowed
        self._pending = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.error: Exception | None = None

    def request(self) -> None:
        if not self.artifacts.shared:
            return
        with self._guard:
            self._pending.set()
            if self._thread is None or not self._thread.is_alive():
                self._idle.clear()
                self._thread = threading.Thread(target=self._loop, name="publish-run", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._guard:
                if not self._pending.is_set():
                    self._idle.set()
                    return
                self._pending.clear()
            if not self.allowed():  # the job was taken over: its new worker publishes now
                continue
            try:
                self.artifacts.publish(self.kind, self.persona)
                faults.fault("run-published")  # crash tests: the worker dies right after a save reached the store
            except Exception as exc:  # training goes on; the next save tries again
                self.error = exc
                log.warning("publishing %s %s failed: %s", self.kind, self.persona, exc)

    def finish(self) -> None:
        self._idle.wait()
