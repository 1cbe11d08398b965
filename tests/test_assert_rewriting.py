"""Asserts inside the tests' support modules are rewritten like those in test modules.

pytest rewrites only the test modules it collects; a support module imported first by
conftest.py (or listed in ``pytest_plugins``) keeps plain asserts, whose failures then say
nothing about the values involved. conftest.py registers them for rewriting before their first
import; this test fails when one is imported unrewritten.
"""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.backend_independent

SUPPORT_MODULES = ("browser_fixtures", "capture_support", "server_fixtures", "tamper")


@pytest.mark.parametrize("name", SUPPORT_MODULES)
def test_a_support_module_has_its_asserts_rewritten(name: str) -> None:
    module = importlib.import_module(name)
    assert "@py_builtins" in vars(module), f"{name}.py was imported without assert rewriting"
