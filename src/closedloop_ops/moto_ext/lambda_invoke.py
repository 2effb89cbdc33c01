"""Lambda `Invoke` with `InvocationType=Event` delivered to a local function (moto needs Docker).

AWS queues an asynchronous invocation and runs the function later, with its retries and on-failure
destination. moto runs functions in Docker containers, which this machine does not have. Here an
asynchronous invoke can be routed (the local loop routes it to the function's invocation queue,
where its dispatcher runs the real handler); without a router, moto's behaviour stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from moto.awslambda.responses import LambdaResponse

# (function name or ARN, payload) → True when the invocation was accepted
AsyncRouter = Callable[[str, bytes], bool]

_router: AsyncRouter | None = None
_original = LambdaResponse.invoke


def set_async_router(router: AsyncRouter | None) -> None:
    global _router  # noqa: PLW0603 - one process-wide hook
    _router = router


def _invoke(self: LambdaResponse) -> Any:
    if _router is not None and self.headers.get("X-Amz-Invocation-Type") == "Event":
        function = unquote(self.path.rsplit("/", 2)[-2])
        body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode()
        if _router(function, body):
            return 202, {"status": "202", "content-type": "application/json"}, b""
    return _original(self)


def install() -> None:
    LambdaResponse.invoke = _invoke  # type: ignore[method-assign]
