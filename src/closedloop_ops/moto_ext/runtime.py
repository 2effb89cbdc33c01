"""SageMaker Runtime InvokeEndpoint served by a real model (moto 5.2.x answers with canned bodies).

AWS: InvokeEndpoint runs the request through the model the endpoint's current config serves and,
when the config enables data capture, writes request and response to S3. moto returns a fixed
body. Here a model server can be registered (the local loop registers one that loads the deployed
model version and writes SageMaker's data-capture files); without one, moto's behaviour stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

# (account, endpoint name, body, content type, accept, inference id) → (status, body, content type, variant)
ModelServer = Callable[[str, str, bytes, str, str, str | None], tuple[int, bytes, str, str]]

_server: ModelServer | None = None
_original = SageMakerRuntimeResponse.invoke_endpoint


def set_model_server(server: ModelServer | None) -> None:
    """Serve InvokeEndpoint with `server` (None restores moto's canned answers)."""
    global _server  # noqa: PLW0603 - one process-wide hook
    _server = server


def _invoke_endpoint(self: SageMakerRuntimeResponse) -> Any:
    if _server is None:
        return _original(self)
    endpoint = self._get_param("EndpointName") or self.path.split("/")[2]
    status, body, content_type, variant = _server(
        self.current_account,
        endpoint,
        self.body if isinstance(self.body, bytes) else str(self.body).encode(),
        self.headers.get("Content-Type", "application/octet-stream"),
        self.headers.get("Accept", "*/*"),
        self.headers.get("X-Amzn-SageMaker-Inference-Id"),
    )
    headers = {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": variant}
    return status, headers, body


def install() -> None:
    SageMakerRuntimeResponse.invoke_endpoint = _invoke_endpoint  # type: ignore[method-assign]
