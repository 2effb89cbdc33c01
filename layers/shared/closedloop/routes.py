"""The route table: for every route, its one name and what it is made of.

The name is what the ledger records as a decision's `route` and what the route's metrics and
notifications say. `function` is `functions/<function>/app.py` and the template's
`<Logical>Function`; `event_model` the model its handler parses, `service` the domain entry point
the handler calls, `line_from` where in the event the route finds the model line. `closedloop
route` names routes from this table, `docs/architecture.md`'s route table is generated from it,
and `tests/unit/test_routes.py` checks every entry against the code, the template and `events/`.
Nothing here is imported by anything heavier than a dataclass: services take their names from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    number: int
    name: str
    function: str
    logical_id: str
    trigger: str
    via: str
    event_model: str
    service: str
    line_from: str
    does: str
    samples: tuple[str, ...]


DATA_ARRIVAL = Route(
    number=1,
    name="data-arrival",
    function="start_data_prep",
    logical_id="StartDataPrepFunction",
    trigger="aws.s3 / Object Created, data bucket, raw/<line>/…",
    via="EventBridge rule → SQS queue (batching window)",
    event_model="closedloop.events.s3.ObjectCreatedEvent",
    service="closedloop.dataprep.batch.ArrivalBatch.handle",
    line_from="the key's first folder under raw/",
    does="coalesce the burst, dedupe, start one preparation run per line (Processing or Glue)",
    samples=("start_data_prep_sqs.json",),
)
DATA_PREPARED = Route(
    number=2,
    name="data-prepared",
    function="start_training",
    logical_id="StartTrainingFunction",
    trigger="aws.glue / Glue Job State Change; aws.sagemaker / SageMaker Processing Job State Change",
    via="EventBridge rules",
    event_model="closedloop.events.jobs.GlueJobStateChangeEvent | ProcessingJobStateChangeEvent",
    service="closedloop.training.service.TrainingStarter.handle",
    line_from="the prepared run's dataset",
    does="start the training pipeline for the line's model group, or report the failed run",
    samples=("glue_job_state_change.json", "processing_job_state_change.json"),
)
PIPELINE_FINISHED = Route(
    number=3,
    name="pipeline-finished",
    function="approval_gate",
    logical_id="ApprovalGateFunction",
    trigger="aws.sagemaker / SageMaker Model Building Pipeline Execution Status Change",
    via="EventBridge rule",
    event_model="closedloop.events.pipeline.PipelineExecutionStatusChangeEvent",
    service="closedloop.approval.service.LineGates.handle",
    line_from="the execution's ModelPackageGroupName parameter",
    does="release the line's retraining lock; approve, reject or recommend the registered version",
    samples=("pipeline_execution_status_change.json",),
)
MODEL_APPROVAL = Route(
    number=4,
    name="model-approval",
    function="deploy_model",
    logical_id="DeployModelFunction",
    trigger="aws.sagemaker / SageMaker Model Package State Change, Approved or Rejected",
    via="EventBridge rule → SQS queue (one at a time)",
    event_model="closedloop.events.registry.ModelPackageStateChangeEvent",
    service="closedloop.deploy.queue.ApprovalQueue.handle",
    line_from="the model package group",
    does="deploy the approved version blue/green to the line's endpoint, or roll a rejected live one back",
    samples=("deploy_model_sqs.json",),
)
DEPLOYMENT_OUTCOME = Route(
    number=5,
    name="deployment-outcome",
    function="record_deployment",
    logical_id="RecordDeploymentFunction",
    trigger="aws.sagemaker / SageMaker Endpoint (Deployment) State Change",
    via="EventBridge rule",
    event_model="closedloop.events.endpoint.EndpointStateChangeEvent | EndpointDeploymentStateChangeEvent",
    service="closedloop.deploy.outcome.DeploymentRecorder.handle",
    line_from="the endpoint name",
    does="record the deployment's outcome (live, rolled back, failed), tag the version, notify",
    samples=("endpoint_state_change.json", "endpoint_deployment_state_change.json"),
)
ALARM = Route(
    number=6,
    name="alarm",
    function="start_retraining",
    logical_id="StartRetrainingFunction",
    trigger="aws.cloudwatch / CloudWatch Alarm State Change to ALARM: a line's drift alarms, ExtraAlarmNames",
    via="EventBridge rules",
    event_model="closedloop.events.cloudwatch.AlarmStateChangeEvent",
    service="closedloop.retrain.service.AlarmRetraining.handle",
    line_from="the alarm's name (a line's own, or claimed in its retraining.alarms)",
    does="start one retraining of the line under its lock and cooldown, never a storm",
    samples=("alarm_state_change.json",),
)
DRIFT_MONITOR = Route(
    number=7,
    name="drift-monitor",
    function="drift_monitor",
    logical_id="DriftMonitorFunction",
    trigger="EventBridge Scheduler, one schedule per line",
    via="Scheduler target input",
    event_model="closedloop.events.scheduler.DriftMonitorRun",
    service="closedloop.drift.monitor.DriftMonitor.handle",
    line_from="the schedule's input `line`",
    does="measure the line's captured traffic against its training baseline (and its attributions against the "
    "version's explainability baseline, by a Clarify job); publish drift metrics",
    samples=("drift_monitor_schedule.json",),
)

STAGE_CHANGE = Route(
    number=8,
    name="stage-change",
    function="promote_model",
    logical_id="PromoteModelFunction",
    trigger="closedloop / Model Version Stage Change, from the stage before (a live version) or a later stage",
    via="EventBridge rule (cross-account, the bus policy names the accounts)",
    event_model="closedloop.events.stage.StageChangeEvent",
    service="closedloop.promotion.service.StageChanges.handle",
    line_from="the event's `line`",
    does="promote a version live in the stage before into this stage (policy or an approver releases it); "
    "in the account that trained it, record what every stage made of it",
    samples=("stage_change_live.json",),
)

ROUTES: tuple[Route, ...] = (
    DATA_ARRIVAL,
    DATA_PREPARED,
    PIPELINE_FINISHED,
    MODEL_APPROVAL,
    DEPLOYMENT_OUTCOME,
    ALARM,
    DRIFT_MONITOR,
    STAGE_CHANGE,
)


def by_function(function: str) -> Route:
    """The route a function (`functions/<function>/`, or its template logical id) serves.

    Raises:
        KeyError: no route has that function.
    """
    for route in ROUTES:
        if function in (route.function, route.logical_id):
            return route
    raise KeyError(function)


def markdown_table() -> str:
    """The route table of docs/architecture.md."""
    rows = ["| # | route | trigger | function | line from | does |", "|---|---|---|---|---|---|"]
    rows += [
        f"| {r.number} | `{r.name}` | {r.trigger} ({r.via}) | `{r.function}` → `{r.service.rsplit('.', 2)[-2]}."
        f"{r.service.rsplit('.', 1)[-1]}` | {r.line_from} | {r.does} |"
        for r in ROUTES
    ]
    return "\n".join(rows)
