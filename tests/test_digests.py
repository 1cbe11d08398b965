"""Digests: canonical JSON is byte-stable, manifests name directories, prefixes are checked."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import clew
from clew.domain import digests

# Touches no store: the embedded pass runs it, the backend and remote passes would repeat it.
pytestmark = pytest.mark.backend_independent

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def test_digest_bytes_is_sha256_with_prefix() -> None:
    assert digests.digest_bytes(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert digests.is_digest(digests.digest_bytes(b""))


def test_canonical_json_sorts_keys_and_drops_spaces() -> None:
    assert digests.canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_non_finite_floats_encode_without_failing() -> None:
    encoded = digests.canonical_json({"x": math.inf, "y": math.nan})
    assert encoded == b'{"x":Infinity,"y":NaN}'


def test_manifest_digest_ignores_insertion_order_but_not_content() -> None:
    one = digests.manifest_digest({"a.txt": digests.digest_bytes(b"1"), "b": "sha256:" + "0" * 64})
    two = digests.manifest_digest({"b": "sha256:" + "0" * 64, "a.txt": digests.digest_bytes(b"1")})
    three = digests.manifest_digest(
        {"a.txt": digests.digest_bytes(b"2"), "b": "sha256:" + "0" * 64}
    )
    assert one == two != three


def test_is_digest_rejects_near_misses() -> None:
    good = "sha256:" + "a" * 64
    assert digests.is_digest(good)
    for bad in ("sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 64, "a" * 64):
        assert not digests.is_digest(bad)
    assert digests.short(good) == "sha256:aaaaaaaaaaaa"
    assert digests.hex_part(good) == "a" * 64


@given(st.dictionaries(st.text(max_size=8), _json, max_size=6))
def test_digest_json_depends_only_on_content(value: dict) -> None:
    reordered = dict(reversed(list(value.items())))
    assert digests.digest_json(value) == digests.digest_json(reordered)
    assert digests.is_digest(digests.digest_json(value))


def test_the_streaming_helpers_agree_with_hashing_the_bytes_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * (digests.CHUNK // 256 + 3)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    hasher = digests.Hasher()
    for start in range(0, len(data), 1000):
        hasher.update(memoryview(data)[start : start + 1000])
    expected = digests.digest_bytes(data)
    assert hasher.digest() == digests.digest_file(path) == expected
    assert digests.digest_chunks(digests.file_chunks(path)) == expected
    assert b"".join(digests.file_chunks(path, limit=10)) == data[:10]


# Content digests computed by hand: an incremental sha256, or "sha256:" glued to a hex digest.
_HAND_HASHED = re.compile(r"hashlib\.sha256\(\)|(PREFIX|\"sha256:\")\s*\+\s*\w+\.hexdigest\(\)")


def test_content_is_hashed_only_through_the_domain() -> None:
    """Files, streams and uploads are hashed by clew/domain/digests.py (its ``Hasher``,
    ``digest_file``, ``digest_chunks``), so the encoding of a digest has one definition.
    Migrations are frozen history and keep their own code."""
    package = Path(clew.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if not path.is_relative_to(package / "domain")
        and not path.is_relative_to(package / "store" / "migrations")
        and _HAND_HASHED.search(path.read_text())
    ]
    assert offenders == []
