"""A local SageMaker endpoint: serves the model version the endpoint's config points at.

Like the SageMaker scikit-learn serving container, it loads `model.tar.gz` and the inference script
named by `SAGEMAKER_PROGRAM` (from `SAGEMAKER_SUBMIT_DIRECTORY` or the archive's `code/`), calls
its `model_fn` / `input_fn` / `predict_fn` / `output_fn`, and — when the endpoint config enables
data capture — writes request and response to S3 in SageMaker's data-capture format:
`<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`, one JSON line per request.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import random
import tarfile
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from closedloop_ops.local.emitter import ACCOUNT

TEXT_TYPES = ("text/csv", "application/json", "text/plain", "application/jsonlines")


@dataclass
class LoadedModel:
    model: Any
    module: ModuleType
    model_data_url: str


@dataclass
class LocalHosting:
    """The model server the local loop registers with moto's InvokeEndpoint."""

    region: str
    fallback_code_dir: Path
    capture_flush_records: int = 1000
    seed: int = 17
    _models: dict[str, LoadedModel] = field(default_factory=dict)
    _buffers: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="closedloop-hosting-")))
    invocations: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - capture sampling, not security

    # -- moto backends (called from inside a moto request: no HTTP round trips) ------------------

    def _sagemaker(self, account: str = ACCOUNT) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[account][self.region]

    def _s3_get(self, uri: str) -> bytes:
        """An object of any account's bucket (bucket names are global; a stage's endpoint reads the
        build account's model archives, which its bucket policy allows)."""
        from moto.s3.models import s3_backends

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        owner = s3_backends.bucket_accounts.get(bucket, ACCOUNT)
        return bytes(s3_backends[owner]["aws"].get_object(bucket, key).value)

    def _s3_put(self, uri: str, body: bytes) -> None:
        from moto.s3.models import s3_backends

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        owner = s3_backends.bucket_accounts.get(bucket, ACCOUNT)
        s3_backends[owner]["aws"].put_object(bucket, key, body)

    # -- serving --------------------------------------------------------------------------------

    def __call__(
        self, account: str, endpoint_name: str, body: bytes, content_type: str, accept: str, inference_id: str | None
    ) -> tuple[int, bytes, str, str]:
        backend = self._sagemaker(account)
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            return 400, json.dumps({"message": f"Endpoint {endpoint_name} not found."}).encode(), "application/json", ""
        config = backend.endpoint_configs[endpoint.endpoint_config_name]
        variant = config.production_variants[0]
        model = backend._models[variant["ModelName"]]
        loaded = self._load(model.primary_container or (model.containers or [{}])[0])
        try:
            out_bytes, out_type = self._predict(loaded, body, content_type, accept)
        except Exception as exc:
            return (
                400,
                json.dumps({"message": f"model error: {type(exc).__name__}"}).encode(),
                "application/json",
                variant["VariantName"],
            )
        self.invocations += 1
        capture = getattr(config, "data_capture_config", None) or {}
        if capture.get("EnableCapture") and self._random.uniform(0, 100) < float(
            capture.get("InitialSamplingPercentage", 100)
        ):
            self._capture(
                endpoint_name,
                variant["VariantName"],
                capture,
                body,
                content_type,
                out_bytes,
                out_type,
                inference_id,
            )
        return 200, out_bytes, out_type, variant["VariantName"]

    def predict_with_version(self, model_package_arn: str, body: bytes, content_type: str, accept: str) -> bytes:
        """Score a request with a registered model version as an endpoint serving it would — its archive,
        its inference code — but with no endpoint and no data capture (an offline evaluation).

        Raises:
            KeyError: no such model version.
            ValueError: the model's code refused the request.
        """
        loaded = self._load({"ModelPackageName": model_package_arn})
        return self._predict(loaded, body, content_type, accept)[0]

    @staticmethod
    def _predict(loaded: LoadedModel, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """The serving container's calls: `input_fn` → `predict_fn` → `output_fn`; the response and its type."""
        data = loaded.module.input_fn(body.decode() if content_type.startswith(TEXT_TYPES) else body, content_type)
        prediction = loaded.module.predict_fn(data, loaded.model)
        output = loaded.module.output_fn(prediction, accept if accept != "*/*" else content_type)
        out_body, out_type = (
            output if isinstance(output, tuple) else (output, accept if accept != "*/*" else content_type)
        )
        return (out_body.encode() if isinstance(out_body, str) else bytes(out_body)), str(out_type)

    def _load(self, container: dict[str, Any]) -> LoadedModel:
        if container.get("ModelPackageName"):  # a model created from a registered version (of its ARN's account)
            name = container["ModelPackageName"]
            backend = self._sagemaker(name.split(":")[4] if name.startswith("arn:") else ACCOUNT)
            arn = backend.model_package_name_mapping.get(name, name)
            package = backend.model_packages[arn]
            container = {**package.inference_specification["Containers"][0], **container}
        url = container["ModelDataUrl"]
        if url in self._models:
            return self._models[url]
        root = self._workdir / uuid.uuid4().hex
        model_dir = root / "model"
        model_dir.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(self._s3_get(url)), mode="r:gz") as archive:
            archive.extractall(model_dir, filter="data")
        environment = container.get("Environment", {}) or {}
        program = environment.get("SAGEMAKER_PROGRAM", "inference.py")
        code = model_dir / "code"
        submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submit.startswith("s3://"):
            code = root / "code"
            code.mkdir()
            with tarfile.open(fileobj=io.BytesIO(self._s3_get(submit)), mode="r:gz") as archive:
                archive.extractall(code, filter="data")
        if not (code / program).is_file():
            code = self.fallback_code_dir
        spec = importlib.util.spec_from_file_location(f"closedloop_inference_{uuid.uuid4().hex}", code / program)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {program}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded = LoadedModel(model=module.model_fn(str(model_dir)), module=module, model_data_url=url)
        self._models[url] = loaded
        return loaded

    # -- data capture ---------------------------------------------------------------------------

    def _capture(
        self,
        endpoint: str,
        variant: str,
        capture: dict[str, Any],
        body: bytes,
        content_type: str,
        out_body: bytes,
        out_type: str,
        inference_id: str | None,
    ) -> None:
        def part(data: bytes, observed: str, mode: str) -> dict[str, str]:
            textual = observed.split(";", maxsplit=1)[0].strip() in TEXT_TYPES
            return {
                "observedContentType": observed,
                "mode": mode,
                "data": data.decode() if textual else base64.b64encode(data).decode(),
                "encoding": "CSV" if observed.startswith("text/csv") else ("JSON" if textual else "BASE64"),
            }

        metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if inference_id:
            metadata["inferenceId"] = inference_id
        line = json.dumps(
            {
                "captureData": {
                    "endpointInput": part(body, content_type, "INPUT"),
                    "endpointOutput": part(out_body, out_type, "OUTPUT"),
                },
                "eventMetadata": metadata,
                "eventVersion": "0",
            }
        )
        key = (capture["DestinationS3Uri"].rstrip("/"), endpoint, variant)
        with self._lock:
            buffer = self._buffers.setdefault(key, [])
            buffer.append(line)
            if len(buffer) >= self.capture_flush_records:
                self._write(key, buffer)
                self._buffers[key] = []

    def flush(self) -> int:
        """Write every buffered capture record (SageMaker flushes every few minutes)."""
        written = 0
        with self._lock:
            for key, buffer in self._buffers.items():
                if buffer:
                    self._write(key, buffer)
                    written += len(buffer)
            self._buffers = {}
        return written

    def _write(self, key: tuple[str, str, str], lines: list[str]) -> None:
        destination, endpoint, variant = key
        now = datetime.now(UTC)
        name = f"{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"  # SageMaker's file naming
        uri = f"{destination}/{endpoint}/{variant}/{now:%Y/%m/%d/%H}/{name}"
        self._s3_put(uri, ("\n".join(lines) + "\n").encode())
