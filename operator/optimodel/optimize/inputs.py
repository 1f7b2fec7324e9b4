"""Fetches the source model and data objects a spec names, with their digests. Optimizer layer.

Digests feed the content key: the same bytes under another URI give the same key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from optimodel.report import SourceInfo
from optimodel.spec import OptimizedModelSpec
from optimodel.storage import ArtifactStore, open_store


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """Digest of a file, or of a directory as its sorted relative paths and file digests."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Fetched:
    source_path: Path
    source: SourceInfo
    data_paths: dict[str, Path]
    data_sha256: dict[str, str]


def data_uris(spec: OptimizedModelSpec) -> dict[str, str]:
    """Each data role the recipe needs, mapped to its URI."""
    uris = {"evaluation": spec.evaluation.data}
    if spec.optimization.quantization.calibration_data:
        uris["calibration"] = spec.optimization.quantization.calibration_data
    if spec.optimization.pruning is not None:
        uris["training"] = spec.optimization.pruning.training_data
    return uris


def store_for(spec: OptimizedModelSpec, uri: str) -> ArtifactStore:
    return open_store(uri, spec.artifacts.s3)


def fetch(spec: OptimizedModelSpec, workdir: Path) -> Fetched:
    """Download the source and every data object; a missing one fails before any work is done."""
    source_uri = spec.source.uri.rstrip("/")
    source_path = workdir / "source" / (PurePosixPath(source_uri).name or "model")
    store_for(spec, source_uri).download(source_uri, source_path)
    data_paths: dict[str, Path] = {}
    for role, uri in data_uris(spec).items():
        target = workdir / "data" / f"{role}.npz"
        data_paths[role] = store_for(spec, uri).download(uri, target)
    source = SourceInfo(uri=spec.source.uri, size_bytes=_size(source_path), sha256=sha256_tree(source_path))
    return Fetched(
        source_path=source_path,
        source=source,
        data_paths=data_paths,
        data_sha256={role: sha256_file(path) for role, path in data_paths.items()},
    )
