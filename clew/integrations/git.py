"""What code made this run: commit, branch, dirty flag, diff and a web permalink.

Uses the ``git`` command line (always present where a repository is) rather than a Python
binding, and never sends credentials embedded in a remote URL anywhere: they are stripped.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_SCP_REMOTE = re.compile(r"^(?:[\w.\-]+@)?(?P<host>[\w.\-]+):(?P<path>(?!/).+)$")


@dataclass(frozen=True)
class GitState:
    root: str
    commit: str
    branch: str | None
    dirty: bool
    diff: bytes
    remote_url: str | None
    script_path: str | None
    permalink: str | None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.decode(errors="replace").strip() if result.returncode == 0 else None


def capture(cwd: Path, script: Path | None) -> GitState | None:
    """The repository state around ``cwd`` (None outside a git work tree or without commits)."""
    root = _git(cwd, "rev-parse", "--show-toplevel")
    commit = root and _git(cwd, "rev-parse", "HEAD")
    if not root or not commit:
        return None
    branch = _git(cwd, "symbolic-ref", "--short", "-q", "HEAD") or None
    diff = _diff(Path(root))
    status = _git(Path(root), "status", "--porcelain", "--untracked-files=no") or ""
    remote = clean_remote(_git(Path(root), "remote", "get-url", "origin"))
    script_path = None
    if script is not None:
        try:
            script_path = Path(script).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            script_path = None
    return GitState(
        root=root,
        commit=commit,
        branch=branch,
        dirty=bool(status.strip()),
        diff=diff,
        remote_url=remote,
        script_path=script_path,
        permalink=permalink(remote, commit, script_path),
    )


def _diff(root: Path) -> bytes:
    try:
        result = subprocess.run(
            ["git", "diff", "HEAD", "--binary"],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return b""
    return result.stdout if result.returncode == 0 else b""


def clean_remote(url: str | None) -> str | None:
    """The remote URL without user names, passwords or tokens."""
    if not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    match = _SCP_REMOTE.match(url)
    if match:
        return f"{match['host']}:{match['path']}"
    return url


def web_base(remote: str | None) -> tuple[str, str] | None:
    """(host kind, https base URL) for GitHub, GitLab and Bitbucket remotes."""
    if not remote:
        return None
    if "://" in remote:
        parts = urlsplit(remote)
        host, path = parts.hostname or "", parts.path
    else:
        match = _SCP_REMOTE.match(remote)
        if not match:
            return None
        host, path = match["host"], "/" + match["path"]
    path = path.removesuffix(".git").rstrip("/")
    for kind in ("github", "gitlab", "bitbucket"):
        if kind in host:
            return kind, f"https://{host}{path}"
    return None


def permalink(remote: str | None, commit: str, script_path: str | None) -> str | None:
    """A browser link to the script at this exact commit, or the plain remote URL."""
    base = web_base(remote)
    if base is None:
        return remote
    kind, url = base
    suffix = f"/{script_path}" if script_path else ""
    if kind == "github":
        return f"{url}/blob/{commit}{suffix}" if script_path else f"{url}/tree/{commit}"
    if kind == "gitlab":
        return f"{url}/-/blob/{commit}{suffix}" if script_path else f"{url}/-/tree/{commit}"
    return f"{url}/src/{commit}{suffix}"
