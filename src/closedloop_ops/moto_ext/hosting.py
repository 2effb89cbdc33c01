"""SageMaker hosting: what AWS does and moto 5.2.x does not.

* `UpdateEndpoint` exists (moto has none). As on AWS it needs an existing endpoint and endpoint
  config, and an endpoint that is `InService` — otherwise `ValidationException: Cannot update
  in-progress endpoint "<arn>".` It switches the endpoint to the new config at once (a deployment
  that succeeds instantly) and keeps the `DeploymentConfig` it was called with, readable as
  DescribeEndpoint's `LastDeploymentConfig`. Tests (and the local loop) can instead make the next
  update of an endpoint
  - fail: `fail_next_update()` — the old config stays in service, `FailureReason` says why (what an
    auto-rollback on a tripped alarm leaves behind), or
  - hold: `hold_next_update()` — the endpoint stays `Updating` with a `PendingDeploymentSummary`
    until `finish_update()` completes it (succeeded or rolled back).
* `CreateModel`, `CreateEndpointConfig` and `CreateEndpoint` reject a name that exists, with AWS's
  message (`Cannot create already existing model "<arn>".`); moto silently replaces the resource.
* `AddTags` replaces the value of a key the resource already has (moto appends a duplicate key).
* `set_endpoint_status()` puts an endpoint in any status (Creating, Updating, Failed…) for a test.
"""

from __future__ import annotations

import weakref
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker.responses import SageMakerResponse

_next_update: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()


def _backend(account: str, region: str) -> Any:
    return sm_models.sagemaker_backends[account][region]


def _endpoint(account: str, region: str, name: str) -> Any:
    return _backend(account, region).endpoints[name]


def fail_next_update(account: str, region: str, endpoint_name: str, reason: str = "") -> None:
    """The next UpdateEndpoint of this endpoint is accepted but rolled back: the old config keeps serving."""
    _next_update[_endpoint(account, region, endpoint_name)] = (
        "fail",
        reason
        or "Deployment rolled back: CloudWatch alarm closedloop-loans-endpoint-5xx went into ALARM during baking.",
    )


def hold_next_update(account: str, region: str, endpoint_name: str) -> None:
    """The next UpdateEndpoint of this endpoint leaves it `Updating` until `finish_update()`."""
    _next_update[_endpoint(account, region, endpoint_name)] = ("hold", "")


def finish_update(account: str, region: str, endpoint_name: str, *, succeeded: bool = True, reason: str = "") -> None:
    """Complete a held update: switch to the pending config, or roll back to the old one."""
    endpoint = _endpoint(account, region, endpoint_name)
    pending = getattr(endpoint, "pending_deployment_summary", None)
    if not pending:
        raise ValueError(f"endpoint {endpoint_name} has no update in progress")
    if succeeded:
        _switch(_backend(account, region), endpoint, pending["EndpointConfigName"])
    else:
        endpoint.failure_reason = reason or "Deployment rolled back."
    endpoint.pending_deployment_summary = None
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = utcnow()


def set_endpoint_status(account: str, region: str, endpoint_name: str, status: str, failure_reason: str = "") -> None:
    """Put an endpoint in a status (as if SageMaker were creating, updating or had failed it)."""
    endpoint = _endpoint(account, region, endpoint_name)
    endpoint.endpoint_status = status
    endpoint.failure_reason = failure_reason or None
    endpoint.last_modified_time = utcnow()


def _switch(backend: Any, endpoint: Any, config_name: str) -> None:
    config = backend.endpoint_configs[config_name]
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    endpoint.data_capture_config = config.data_capture_config
    endpoint.failure_reason = None


def _update_endpoint(self: SageMakerResponse) -> Any:
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    config_name = self._get_param("EndpointConfigName")
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        arn = sm_models.FakeEndpoint.arn_formatter(name, self.current_account, self.region)
        raise sm_models.ValidationError(message=f'Could not find endpoint "{arn}".')
    if config_name not in backend.endpoint_configs:
        arn = sm_models.FakeEndpointConfig.arn_formatter(config_name, self.current_account, self.region)
        raise sm_models.ValidationError(message=f'Could not find endpoint configuration "{arn}".')
    if endpoint.endpoint_status != "InService":
        raise sm_models.ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
    endpoint.last_deployment_config = self._get_param("DeploymentConfig")
    behaviour, reason = _next_update.pop(endpoint, ("instant", ""))
    if behaviour == "fail":
        endpoint.failure_reason = reason
    elif behaviour == "hold":
        endpoint.endpoint_status = "Updating"
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": config_name,
            "StartTime": utcnow(),
            "ProductionVariants": [
                {"VariantName": v.get("VariantName"), "VariantStatus": [{"Status": "Creating", "StartTime": utcnow()}]}
                for v in backend.endpoint_configs[config_name].production_variants
            ],
        }
    else:
        _switch(backend, endpoint, config_name)
    endpoint.last_modified_time = utcnow()
    return ActionResult({"EndpointArn": endpoint.arn})


def _reject_existing(kind: str, collection: str, param: str, original: Any) -> Any:
    def create(self: SageMakerResponse) -> Any:
        name = self._get_param(param)
        if name in getattr(self.sagemaker_backend, collection):
            arn = sm_models.arn_formatter(kind, name, self.current_account, self.region)
            label = {"endpoint-config": "endpoint configuration"}.get(kind, kind)
            raise sm_models.ValidationError(message=f'Cannot create already existing {label} "{arn}".')
        return original(self)

    return create


def _add_tags(self: sm_models.SageMakerModelBackend, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
    resource = self._get_resource_from_arn(arn)
    if resource.tags is None:
        resource.tags = []
    for tag in tags:
        resource.tags[:] = [t for t in resource.tags if t["Key"] != tag["Key"]]
        resource.tags.append(tag)
    return list(resource.tags)


_original = {
    "create_model": SageMakerResponse.create_model,
    "create_endpoint_config": SageMakerResponse.create_endpoint_config,
    "create_endpoint": SageMakerResponse.create_endpoint,
}


def install() -> None:
    SageMakerResponse.update_endpoint = _update_endpoint  # type: ignore[attr-defined]
    SageMakerResponse.create_model = _reject_existing(  # type: ignore[method-assign]
        "model", "_models", "ModelName", _original["create_model"]
    )
    SageMakerResponse.create_endpoint_config = _reject_existing(  # type: ignore[method-assign]
        "endpoint-config", "endpoint_configs", "EndpointConfigName", _original["create_endpoint_config"]
    )
    SageMakerResponse.create_endpoint = _reject_existing(  # type: ignore[method-assign]
        "endpoint", "endpoints", "EndpointName", _original["create_endpoint"]
    )
    sm_models.SageMakerModelBackend.add_tags = _add_tags  # type: ignore[method-assign]
