"""Reading a DVC project's pipeline as plain values: ``dvc.yaml``, ``dvc.lock``, params files.

Each stage of ``dvc.lock`` (what ``dvc repro`` last ran) becomes one stage value: its command,
its params, its deps and outs with DVC's md5, and, when the bytes are in the DVC cache (or in
the workspace with the same md5), their sha256, which is what clew names content by. A file
whose bytes are in neither place is kept by reference: its md5 only, said so in ``notes``. The
git commit is the last one that touched ``dvc.lock``. The lock entry's own digest identifies a
stage's run, so an import after another ``dvc repro`` adds only the stages that changed.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clew.domain.digests import digest_file, digest_json, hex_part
from clew.errors import InvalidInputError, NotFoundError

CHUNK = 1024 * 1024


@dataclass
class Project:
    """One DVC project read: its stages (as the import service takes them) and notes."""

    name: str
    commit: str | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_project(path: Path) -> Project:
    """The stages of the DVC project at ``path`` as ``dvc repro`` last recorded them."""
    root = path.resolve()
    lock_file = root / "dvc.lock"
    if not (root / "dvc.yaml").is_file():
        raise NotFoundError(f"{root} has no dvc.yaml; point at a DVC project's directory.")
    if not lock_file.is_file():
        raise NotFoundError(
            f"{root} has no dvc.lock, so no stage has run yet; run `dvc repro` there first."
        )
    lock = _yaml(lock_file)
    stages = lock.get("stages")
    if not isinstance(stages, dict):
        raise InvalidInputError(f"{lock_file} has no stages; run `dvc repro` to write them.")
    project = Project(root.name, _commit(root))
    cache = _cache_dir(root)
    for name, entry in stages.items():
        project.stages.append(_stage(root, cache, str(name), entry, project))
    return project


def _yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidInputError(f"{path} is not valid YAML ({error.__class__.__name__}).") from None
    return loaded if isinstance(loaded, dict) else {}


def _commit(root: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "log", "-n", "1", "--format=%H", "--", "dvc.lock"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _cache_dir(root: Path) -> Path:
    """The project's cache (``.dvc/config`` may move it; the default is ``.dvc/cache``)."""
    config = root / ".dvc" / "config"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "dir" and value.strip():
                return (root / ".dvc" / value.strip()).resolve()
    return root / ".dvc" / "cache"


def _stage(root: Path, cache: Path, name: str, entry: Any, project: Project) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidInputError(f"stage {name!r} of dvc.lock is not a mapping.")
    params: dict[str, Any] = {}
    for file_name, values in (entry.get("params") or {}).items():
        for key, value in _flat(values):
            params[f"{key}" if file_name == "params.yaml" else f"{file_name}:{key}"] = value
    return {
        "stage": name,
        "lock_digest": hex_part(digest_json(entry)),
        "commit": project.commit,
        "cmd": entry.get("cmd"),
        "params": params,
        "deps": [_file(root, cache, item, name, project) for item in entry.get("deps") or []],
        "outs": [_file(root, cache, item, name, project) for item in entry.get("outs") or []],
    }


def _flat(values: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested params as dotted keys (``train.lr``), the way DVC names them."""
    if isinstance(values, dict):
        found = []
        for key, value in values.items():
            found.extend(_flat(value, f"{prefix}{key}."))
        return found
    return [(prefix.rstrip("."), values)]


def _file(root: Path, cache: Path, item: Any, stage: str, project: Project) -> dict[str, Any]:
    path, md5 = str(item.get("path")), str(item.get("md5") or "")
    described = {"path": path, "md5": md5, "size": item.get("size"), "sha256": None}
    if md5.endswith(".dir") or not md5:
        project.notes.append(
            f"stage {stage}: {path} is a directory (or has no md5), so it is recorded by its "
            "DVC md5 only."
        )
        return described
    for candidate in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):
        if candidate.is_file():
            described["sha256"] = _sha256(candidate)
            return described
    workspace = root / path
    if workspace.is_file() and _md5(workspace) == md5:
        described["sha256"] = _sha256(workspace)
        return described
    project.notes.append(
        f"stage {stage}: the bytes of {path} (md5 {md5}) are in neither the DVC cache nor the "
        "workspace, so it is recorded by reference; `dvc pull` and import again to hash it."
    )
    return described


def _sha256(path: Path) -> str:
    return digest_file(path)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
