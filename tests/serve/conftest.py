"""In-process clients whose apps run their lifespan, so an app's inference pool and learner end with
the test that made them, not whenever the garbage collector finds the app (a pool thread that ran
torch, left to a later collection, is native state outlived by nothing that owns it)."""

import contextlib

import pytest


@pytest.fixture
def open_client():
    """open_client(app) -> a started fastapi TestClient, closed (lifespan shutdown) after the test."""
    from fastapi.testclient import TestClient

    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(TestClient(app))
