"""The lineage vocabulary every route writes and `closedloop lineage` reads.

The same keys are used as resource tags (jobs, executions, models, endpoint configs), as the model
package's `CustomerMetadataProperties`, and as names of the training pipeline's parameters, so a
prediction can be walked back: inference → endpoint config → model version → approval decision →
pipeline execution and trigger → prepared-data manifest → raw object versions → code version.
"""

from __future__ import annotations

from typing import Final

# tag / metadata keys
PREP_RUN_ID: Final = "closedloop:prep-run-id"
DATASET: Final = "closedloop:dataset"
PREP_MANIFEST: Final = "closedloop:prep-manifest"  # the run's input manifest (raw object versions)
PREPARED_MANIFEST: Final = "closedloop:prepared-manifest"  # prepared/<dataset>/<run>/manifest.json
PREPARED_DATA: Final = "closedloop:prepared-data"
# the Dataset step's lineage (`dataset.json`): the feature group, the offline-store objects read, the as-of rule
FEATURE_DATASET: Final = "closedloop:feature-dataset"
CODE_VERSION: Final = "closedloop:code-version"
PIPELINE_EXECUTION: Final = "closedloop:pipeline-execution"
TRIGGER: Final = "closedloop:trigger"  # "upload" or "alarm"
TRIGGER_REASON: Final = "closedloop:trigger-reason"
MODEL_PACKAGE: Final = "closedloop:model-package"
MODEL_VERSION: Final = "closedloop:model-version"
APPROVAL: Final = "closedloop:approval"
DEPLOYMENT_OUTCOME: Final = "closedloop:deployment-outcome"
# a stage's copy of a version built in another account (docs/multi-account.md): the version it was
# promoted from (in the account that trained it), that account, and the stage it came from
SOURCE_PACKAGE: Final = "closedloop:source-package"
SOURCE_ACCOUNT: Final = "closedloop:source-account"
PROMOTED_FROM: Final = "closedloop:promoted-from"

# training pipeline parameter names (pipelines/ defines them; routes 2 and 6 set them)
PARAM_INPUT_DATA: Final = "InputDataUri"
PARAM_PREPARED_MANIFEST: Final = "PreparedManifestUri"
PARAM_TRIGGER: Final = "TriggerKind"
PARAM_TRIGGER_REASON: Final = "TriggerReason"
PARAM_PREP_RUN_ID: Final = "PrepRunId"
PARAM_CODE_VERSION: Final = "CodeVersion"
PARAM_MODEL_GROUP: Final = "ModelPackageGroupName"

MAX_TAG_VALUE = 256


def tag_value(value: str) -> str:
    """A valid SageMaker tag value: at most 256 characters of letters, digits, spaces and `_.:/=+-@`.

    Over-long values keep their end (ARNs and URIs differ at the end), marked with a leading `...`;
    other characters become `_`.
    """
    cleaned = "".join(ch if ch.isalnum() or ch.isspace() or ch in "_.:/=+-@" else "_" for ch in value)
    return cleaned if len(cleaned) <= MAX_TAG_VALUE else "..." + cleaned[-(MAX_TAG_VALUE - 3) :]
