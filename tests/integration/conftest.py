"""The guard every integration module runs under: what the host holds of containers, domains,
nspawn machines, mounts, loop devices, network namespaces, veths, CNI reservations and conmon
processes is read before the module and after it; anything new after it fails the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import host_leftovers, new_leftovers


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = host_leftovers()
    yield
    left = new_leftovers(before)
    assert not left, "left on the host by this module: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in left.items())
