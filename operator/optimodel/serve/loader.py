"""Fetch the artifact, verify its sha256, load the interpreters, warm them up. Serve layer, I/O edge.

May import `optimodel.storage`, `optimodel.errors`, `optimodel.spec` (S3Settings), `model`,
`errors`, numpy and the stdlib. Blocking: the app runs it in a thread while the server already
answers liveness probes.

The digest is checked on the downloaded bytes before any interpreter sees them (DESIGN: artifacts
are verified). A mismatch, refused credentials or a corrupt model is permanent: the server stays
live but never ready and says why (readiness body, v1 status, log), because a restart cannot fix it
and a crash loop would hide the message. An unreachable store or a missing object is transient (an
outage ends; an object deleted by mistake is restored, or published late): the app retries with
backoff, so the pod becomes ready by itself once the object is there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimodel.errors import AccessDeniedError, NotFoundError, OptimodelError, StorageError
from optimodel.serve.errors import LoadError
from optimodel.serve.model import LiteModel
from optimodel.spec import S3Settings
from optimodel.storage import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSettings:
    uri: str
    sha256: str | None
    interpreters: int
    threads: int
    s3: S3Settings
    directory: Path  # where the artifact is downloaded


def fetch(settings: LoadSettings) -> Path:
    """Download to `directory/model.tflite`; store errors become LoadErrors (only outages are transient)."""
    destination = settings.directory / "model.tflite"
    try:
        open_store(settings.uri, settings.s3).download(settings.uri, destination)
    except AccessDeniedError as error:
        raise LoadError(str(error), permanent=True) from None
    except (NotFoundError, StorageError) as error:  # a missing object may be published or restored yet
        raise LoadError(str(error), permanent=False) from None
        raise LoadError(str(error), permanent=False) from None
    except OptimodelError as error:  # a malformed URI
        raise LoadError(str(error), permanent=True) from None
    if not destination.is_file():
        raise LoadError(f"{settings.uri} is not a single .tflite file", permanent=True)
    return destination


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, uri: str, expected: str | None) -> str:
    actual = sha256_of(path)
    if expected is None:
        log.warning("no expected sha256 given: serving %s unverified (sha256 %s)", uri, actual)
    elif actual != expected.lower():
        raise LoadError(
            f"sha256 mismatch for {uri}: expected {expected.lower()}, downloaded {actual}; refusing to serve",
            permanent=True,
        )
    return actual


def warm_up(model: LiteModel) -> None:
    """One call with zeros at batch 1 so the first client does not pay for allocation and delegate setup."""
    arrays = {
        s.name: np.zeros([d if d >= 0 else 1 for d in s.shape], dtype=s.dtype) for s in model.signature.inputs
    }
    model.predict(arrays)


def load(settings: LoadSettings) -> list[LiteModel]:
    """Fetch, verify, then `interpreters` warmed-up models over the verified file."""
    path = fetch(settings)
    digest = verify(path, settings.uri, settings.sha256)
    try:
        models = [LiteModel(path, settings.threads) for _ in range(settings.interpreters)]
        for model in models:
            warm_up(model)
    except (ValueError, RuntimeError) as error:
        raise LoadError(f"{settings.uri} is not a loadable TFLite model: {error}", permanent=True) from None
    log.info(
        "loaded %s (sha256 %s) into %d interpreter(s) of %d thread(s)",
        settings.uri,
        digest,
        settings.interpreters,
        settings.threads,
    )
    return models
