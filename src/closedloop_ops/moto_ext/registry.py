"""SageMaker Model Registry: what AWS does and moto 5.2.x does not.

* `UpdateModelPackage` changes only the fields a request names. moto sets every omitted field to
  None, so approving a version would erase its `CustomerMetadataProperties` (its lineage).
* `UpdateModelPackage` records the caller in `LastModifiedBy.IamIdentity` (the assumed-role or user
  ARN), which is how the rollout route verifies who approved. moto copies `CreatedBy`.
* `AddTags` / `ListTags` / `DeleteTags` accept a versioned model-package ARN
  (`…:model-package/<group>/<version>`); moto crashes splitting it.
* Every registration and every change of a model package is a `SageMaker Model Package State
  Change` event on AWS; moto emits none. Listeners registered with `on_package_change` are called
  after CreateModelPackage and UpdateModelPackage (the local loop publishes the event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker import models as sm_models
from moto.sagemaker.responses import SageMakerResponse

# (account, region, DescribeModelPackage view of the package) → None
PackageListener = Callable[[str, str, dict[str, Any]], None]
_listeners: list[PackageListener] = []


def on_package_change(listener: PackageListener | None) -> None:
    """Call `listener` after every CreateModelPackage / UpdateModelPackage (None removes all)."""
    if listener is None:
        _listeners.clear()
    else:
        _listeners.append(listener)


def _notify(response: SageMakerResponse, package: Any) -> None:
    if _listeners:
        described = package.gen_response_object()
        for listener in list(_listeners):
            listener(response.current_account, response.region, described)


_original_create = SageMakerResponse.create_model_package


def _create_model_package(self: SageMakerResponse) -> Any:
    result = _original_create(self)
    if _listeners:
        arn = self.sagemaker_backend.model_package_name_mapping.get(self._get_param("ModelPackageGroupName"))
        package = self.sagemaker_backend.model_packages.get(arn) if arn else None
        if package is not None:
            _notify(self, package)
    return result


def _caller(response: SageMakerResponse) -> dict[str, str]:
    """The IAM identity behind the request's access key, as STS GetCallerIdentity would say."""
    from moto.sts.models import sts_backends

    access_key = response.get_access_key()
    account = response.current_account
    backend = sts_backends[account][response.partition]
    user_id, arn, _ = backend.get_caller_identity(access_key, response.region)
    return {"Arn": arn, "PrincipalId": user_id}


def _update_model_package(self: SageMakerResponse) -> Any:
    backend = self.sagemaker_backend
    arn = self._get_param("ModelPackageArn")
    mapped = backend.model_package_name_mapping.get(arn, arn)
    package = backend.model_packages.get(mapped)
    if package is None:
        raise sm_models.ValidationError(f"Model package {arn} not found")
    status = self._get_param("ModelApprovalStatus")
    if status is not None:
        package.set_model_approval_status(status)
    description = self._get_param("ApprovalDescription")
    if description is not None:
        package.approval_description = description
    metadata = self._get_param("CustomerMetadataProperties")
    if metadata:
        package.customer_metadata_properties = {**(package.customer_metadata_properties or {}), **metadata}
    to_remove = self._get_param("CustomerMetadataPropertiesToRemove", [])
    if to_remove and package.customer_metadata_properties:
        package.remove_customer_metadata_property(to_remove)
    additional = self._get_param("AdditionalInferenceSpecificationsToAdd")
    if additional:
        package.add_additional_inference_specifications(additional)
    package.last_modified_time = sm_models.utcnow()
    package.last_modified_by = {"IamIdentity": _caller(self)}
    _notify(self, package)
    return ActionResult({"ModelPackageArn": package.arn})


_original_resource_from_arn = sm_models.SageMakerModelBackend._get_resource_from_arn


def _resource_from_arn(self: sm_models.SageMakerModelBackend, arn: str) -> Any:
    resource_part = arn.rsplit(":", maxsplit=1)[-1]
    if resource_part.startswith("model-package/"):
        package = self.model_packages.get(self.model_package_name_mapping.get(arn, arn))
        if package is None:
            raise sm_models.ValidationError(message=f"Could not find model-package with ARN {arn}")
        if package.tags is None:
            package.tags = []
        return package
    return _original_resource_from_arn(self, arn)


def install() -> None:
    SageMakerResponse.update_model_package = _update_model_package  # type: ignore[method-assign]
    SageMakerResponse.create_model_package = _create_model_package  # type: ignore[method-assign]
    sm_models.SageMakerModelBackend._get_resource_from_arn = _resource_from_arn  # type: ignore[method-assign]
