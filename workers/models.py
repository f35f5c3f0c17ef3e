"""Base models: resolve a name or a directory, download GPT-2 safely.

gpt-2-simple addresses a model as ``(model_dir, model_name)``: the files live
in ``<model_dir>/<model_name>/``. A model is given to us as

* a released GPT-2 size (``124M``, ``355M``): ``<models_dir>/<name>/``,
  downloaded on first use from the same place and with the same file list as
  ``gpt_2_simple.download_gpt2``, but with the HTTP status and length
  checked, into a temporary directory that is renamed into place only when
  every file arrived (``download_gpt2`` saves an error page as a model file
  and fails later with a JSON error);
* ``tiny``: a small random model built locally (``workers.tiny_model``), for
  tests and the offline demo;
* a local directory (an absolute path, or one starting with ``.`` or ``~``,
  or containing a ``/``) that holds the model files.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.contract import BadInput
from workers.tiny_model import MODEL_FILES, build_tiny_model, is_complete

DOWNLOAD_URL = "https://openaipublic.blob.core.windows.net/gpt-2"
DOWNLOADABLE = ("124M", "355M")
TINY = ("tiny",)
VALID_NAMES = DOWNLOADABLE + TINY


class ModelUnavailable(BadInput):
    """The model is not here and cannot be fetched; the message says what to do."""


def is_local_path(model: str) -> bool:
    return os.path.isabs(model) or model.startswith((".", "~")) or "/" in model or os.sep in model


def resolve_model(models_dir: Path, model: str, *, download: bool = True,
                  base_url: str = DOWNLOAD_URL, progress=None) -> tuple[Path, str]:
    """Return ``(model_dir, model_name)`` for gpt-2-simple, making sure the
    files are there (building ``tiny``, downloading a GPT-2 size if
    ``download``)."""
    if not isinstance(model, str) or not model.strip():
        raise BadInput(f"no model given: use one of {', '.join(VALID_NAMES)} or a local model directory")
    model = model.strip()
    if is_local_path(model):
        path = Path(model).expanduser().resolve()
        if not path.is_dir():
            raise BadInput(f"model directory {path} does not exist")
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise BadInput(
                f"model directory {path} is missing {', '.join(missing)}: a GPT-2 model directory "
                f"holds {', '.join(MODEL_FILES)}"
            )
        return path.parent, path.name
    if model not in VALID_NAMES:
        raise BadInput(
            f"unknown model {model!r}: use one of {', '.join(VALID_NAMES)} or a local model directory"
        )
    models_dir = Path(models_dir)
    target = models_dir / model
    if not is_complete(target):
        if model in TINY:
            build_tiny_model(target)
        elif download:
            download_model(models_dir, model, base_url=base_url, progress=progress)
        else:
            raise ModelUnavailable(
                f"model {model} is not in {target}: run `parodybot model download {model}` "
                f"or place the model files there"
            )
    return models_dir, model


def download_model(models_dir: Path, name: str, *, base_url: str = DOWNLOAD_URL,
                   timeout: float = 30.0, progress=None) -> Path:
    """Download GPT-2 ``name`` into ``<models_dir>/<name>/`` and return that
    directory. Nothing is left behind when a file fails.

    ``progress(file_name, done_bytes, total_bytes)`` is called as data arrives.
    """
    import requests

    if name not in DOWNLOADABLE:
        raise BadInput(f"unknown model {name!r}: downloadable models are {', '.join(DOWNLOADABLE)}")
    models_dir = Path(models_dir)
    target = models_dir / name
    if is_complete(target):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=models_dir))
    base = base_url.rstrip("/")
    try:
        with requests.Session() as http:
            for file_name in MODEL_FILES:
                url = f"{base}/models/{name}/{file_name}"
                try:
                    r = http.get(url, stream=True, timeout=timeout)
                except requests.RequestException as e:
                    raise ModelUnavailable(
                        f"could not reach {base} to download GPT-2 {name} ({type(e).__name__}): "
                        f"check the network, or place the model files ({', '.join(MODEL_FILES)}) "
                        f"in {target}, or use a local model directory"
                    ) from None
                with r:
                    if r.status_code != 200:
                        raise ModelUnavailable(
                            f"downloading {url} failed: HTTP {r.status_code} {r.reason or ''}".rstrip()
                            + f". Nothing was saved; place the model files in {target} "
                            "or use a local model directory"
                        )
                    expected = r.headers.get("content-length")
                    total = int(expected) if expected and expected.isdigit() else None
                    if r.headers.get("content-encoding", "identity") != "identity":
                        total = None  # iter_content decodes; the length is the encoded one
                    done = 0
                    try:
                        with open(tmp / file_name, "wb") as f:
                            for chunk in r.iter_content(chunk_size=1024 * 1024):
                                f.write(chunk)
                                done += len(chunk)
                                if progress:
                                    progress(file_name, done, total)
                    except requests.RequestException as e:
                        raise ModelUnavailable(
                            f"downloading {url} broke off after {done} bytes ({type(e).__name__}); "
                            "nothing was saved, try again"
                        ) from None
                    if total is not None and done != total:
                        raise ModelUnavailable(
                            f"downloading {url} broke off: got {done} of {total} bytes; "
                            "nothing was saved, try again"
                        )
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
