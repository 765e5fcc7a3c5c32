"""`retrying` (SPEC §13): JetStream is asked again while it says "not now", never a crash; an
answer that says no is not retried."""

from __future__ import annotations

import pytest
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from l3tol1.jetstream.connection import retrying

pytestmark = pytest.mark.asyncio


class TestRetrying:
    @pytest.mark.parametrize(
        "not_now",
        [
            ServiceUnavailableError(code=503, err_code=10008, description="unavailable"),
            BadRequestError(code=400, err_code=10005, description="no suitable peers"),
            TimeoutError(),
        ],
        ids=["unavailable", "no peers yet", "no answer"],
    )
    async def test_not_now_is_asked_again(self, not_now: Exception) -> None:
        """A starting cluster (no peers to place a stream on yet), an election, no answer."""
        calls = []

        async def call() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise not_now
            return "done"

        assert await retrying("a test", call) == "done"
        assert len(calls) == 3

    async def test_no_is_not_asked_again(self) -> None:
        """A refusal (a missing stream, a bad config) is the caller's to handle, at once."""
        calls = []

        async def call() -> None:
            calls.append(1)
            raise NotFoundError(code=404, err_code=10059, description="stream not found")

        with pytest.raises(NotFoundError):
            await retrying("a test", call)
        assert len(calls) == 1
