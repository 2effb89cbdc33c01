"""Create or update the SageMaker training pipeline from its generated definition (`build/pipeline.json`).

    python -m closedloop_ops.pipeline upsert --definition build/pipeline.json \\
        --name closedloop-training --role-arn <TrainingPipelineRoleArn> [--region eu-west-1]

Generate the definition for the account first (`python pipelines/definition.py --role-arn …
--bucket <ArtifactsBucketName>`), so the step code it references is in the stack's artifacts
bucket. Only boto3 is needed here: the `sagemaker` SDK stays a build-time tool.

Before anything is sent, the definition is checked: it must be a pipeline definition with steps,
and it must declare every parameter the routes set when they start it (`closedloop.lineage`), so a
definition that would make every start fail is refused here rather than at 3 a.m.
An unchanged definition and role is a no-op (`unchanged`), so running upsert on every commit is safe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from closedloop import lineage
from closedloop.aws import aws_errors, is_already_exists, is_not_found
from closedloop.errors import ClosedloopError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

MAX_INLINE_DEFINITION = 100 * 1024
REQUIRED_PARAMETERS = (
    lineage.PARAM_INPUT_DATA,
    lineage.PARAM_PREPARED_MANIFEST,
    lineage.PARAM_TRIGGER,
    lineage.PARAM_TRIGGER_REASON,
    lineage.PARAM_PREP_RUN_ID,
    lineage.PARAM_CODE_VERSION,
    lineage.PARAM_MODEL_GROUP,
)


class PipelineDefinitionError(ClosedloopError):
    """The definition is not one closedloop can run (not JSON, no steps, a lineage parameter missing)."""

    code = "InvalidPipelineDefinition"


@dataclass(frozen=True)
class UpsertResult:
    action: Literal["created", "updated", "unchanged"]
    pipeline_arn: str
    steps: int


def check_definition(definition_json: str) -> dict[str, Any]:
    """Parse and check a pipeline definition.

    Raises:
        PipelineDefinitionError: not JSON, no steps, a route's parameter missing, or too large to send inline.
    """
    try:
        definition = json.loads(definition_json)
    except ValueError as exc:
        raise PipelineDefinitionError(f"the definition is not JSON: {exc}") from None
    if not isinstance(definition, dict) or not definition.get("Steps"):
        raise PipelineDefinitionError("the definition has no steps")
    declared = {p.get("Name") for p in definition.get("Parameters", []) if isinstance(p, dict)}
    missing = [name for name in REQUIRED_PARAMETERS if name not in declared]
    if missing:
        raise PipelineDefinitionError(
            f"the definition does not declare the parameters the routes set: {missing}", missing=missing
        )
    if len(definition_json.encode()) > MAX_INLINE_DEFINITION:
        raise PipelineDefinitionError("the definition is larger than CreatePipeline accepts inline (100 KB)")
    return definition


def _same(current: str | None, wanted: str) -> bool:
    try:
        return current is not None and json.loads(current) == json.loads(wanted)
    except ValueError:
        return False


def upsert_pipeline(
    definition_json: str, name: str, role_arn: str, client: SageMakerClient, *, description: str = ""
) -> UpsertResult:
    """Create the pipeline, or update it when its definition or role changed.

    Args:
        definition_json: the generated definition (`build/pipeline.json`).
        name: the pipeline name (`<ResourcePrefix>-training`).
        role_arn: the pipeline's execution role (the stack's `TrainingPipelineRoleArn` output).
        client: a SageMaker client.
        description: the pipeline's description (kept when empty on update).

    Raises:
        PipelineDefinitionError: the definition fails `check_definition`.
        AwsServiceError / ThrottledError: SageMaker refused or failed the call.
    """
    definition = check_definition(definition_json)
    text = json.dumps(definition, sort_keys=True)
    steps = len(definition["Steps"])
    try:
        with aws_errors("sagemaker:DescribePipeline", passthrough=is_not_found):
            current = client.describe_pipeline(PipelineName=name)
    except ClientError:
        current = None
    if current is None:
        try:
            with aws_errors("sagemaker:CreatePipeline", passthrough=is_already_exists):
                created = client.create_pipeline(
                    PipelineName=name,
                    # the same create retried (a timeout, a second CI job) creates one pipeline
                    ClientRequestToken=hashlib.sha256(f"{name}\x1f{role_arn}\x1f{text}".encode()).hexdigest(),
                    PipelineDefinition=text,
                    PipelineDescription=description or "closedloop training pipeline",
                    RoleArn=role_arn,
                    Tags=[{"Key": "closedloop:component", "Value": "training-pipeline"}],
                )
            return UpsertResult("created", created["PipelineArn"], steps)
        except ClientError:  # created by someone else in between: update it instead
            pass
    elif _same(current.get("PipelineDefinition"), text) and current.get("RoleArn") == role_arn:
        return UpsertResult("unchanged", current["PipelineArn"], steps)
    request: dict[str, Any] = {"PipelineName": name, "PipelineDefinition": text, "RoleArn": role_arn}
    if description:
        request["PipelineDescription"] = description
    with aws_errors("sagemaker:UpdatePipeline"):
        updated = client.update_pipeline(**request)
    return UpsertResult("updated", updated["PipelineArn"], steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closedloop_ops.pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    upsert = commands.add_parser("upsert", help="create or update the pipeline from its definition")
    upsert.add_argument("--definition", default="build/pipeline.json", type=Path)
    upsert.add_argument("--name", required=True, help="the pipeline name, <ResourcePrefix>-training")
    upsert.add_argument("--role-arn", required=True, help="the stack's TrainingPipelineRoleArn output")
    upsert.add_argument("--description", default="")
    upsert.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    if not args.definition.is_file():
        print(f"error: {args.definition} does not exist (run `make pipeline` or definition.py)", file=sys.stderr)
        return 2
    import boto3

    client = boto3.session.Session(region_name=args.region).client("sagemaker")
    try:
        result = upsert_pipeline(
            args.definition.read_text(encoding="utf-8"), args.name, args.role_arn, client, description=args.description
        )
    except ClosedloopError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps({"action": result.action, "pipeline_arn": result.pipeline_arn, "steps": result.steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
