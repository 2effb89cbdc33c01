"""Route 1 with the engine `auto`: a run of little data goes to the Glue Python shell job, a run at or
above `PREP_SPARK_THRESHOLD_BYTES` to the Glue Spark job — with the preparation script its tasks
import — and route 2 takes the Spark job's end like the shell job's."""

from __future__ import annotations

import boto3
import pytest

from closedloop import lineage
from closedloop.ledger import Ledger
from support.events import object_created, sqs_batch
from support.handlers import invoke, load_handler
from support.stack import REGION, Stack
from support.training import create_pipeline, glue_event, parameters_of, prepared_run, start_glue_run

THRESHOLD = 1 << 20


def uploads(stack: Stack, dataset: str, sizes: list[int]) -> dict[str, object]:
    return sqs_batch(
        [
            object_created(stack.data_bucket, f"raw/{dataset}/part-{i}.csv", size=size, version_id=f"v-{dataset}-{i}")
            for i, size in enumerate(sizes)
        ]
    )


def runs(job: str) -> list[dict[str, object]]:
    return boto3.client("glue", region_name=REGION).get_job_runs(JobName=job)["JobRuns"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("sizes", "job", "engine"),
    [
        ([100, 200], "closedloop-prep", "glue"),
        ([THRESHOLD - 300, 299], "closedloop-prep", "glue"),
        ([THRESHOLD - 300, 300], "closedloop-prep-spark", "glue-spark"),
        ([THRESHOLD * 40], "closedloop-prep-spark", "glue-spark"),
    ],
    ids=["small", "one-byte-under", "at-the-threshold", "large"],
)
def test_auto_chooses_the_engine_by_the_runs_input_bytes(
    auto_stack: Stack, sizes: list[int], job: str, engine: str
) -> None:
    # Given uploads whose sizes S3 reported, in one batch
    handler = load_handler("start_data_prep")
    # When the batch is handled
    assert invoke(handler, uploads(auto_stack, "loans", sizes))["batchItemFailures"] == []
    # Then one run of the chosen job prepares it, and the other job has none
    other = "closedloop-prep" if job != "closedloop-prep" else "closedloop-prep-spark"
    [run] = runs(job)
    assert runs(other) == []
    assert run["Arguments"]["--engine"] == engine
    shipped = [uri.rsplit("/", 1)[-1] for uri in run["Arguments"]["--extra-py-files"].split(",")]
    # the Spark job's tasks import the preparation script; the shell job runs it as its own script
    assert ("prepare.py" in shipped) is (engine == "glue-spark")
    assert "detectors.py" in shipped and any(name.endswith(".whl") for name in shipped)
    # and the ledger says which engine and why
    ledger = Ledger(auto_stack.settings.ledger_table, boto3.client("dynamodb", region_name=REGION))
    [decision] = [d for d in ledger.decisions_for(f"run:loans/{run['Arguments']['--run-id']}") if d.result == "started"]
    assert (decision.details["engine"], decision.details["input_bytes"], decision.details["job"]) == (
        engine,
        sum(sizes),
        job,
    )


def test_the_spark_jobs_end_starts_training_as_glue_spark(auto_stack: Stack) -> None:
    # Given a preparation run prepared by the Spark job
    create_pipeline()
    run = prepared_run(auto_stack, "5a6b7c8d9e0f1a2b")
    job_run = start_glue_run(run, job="closedloop-prep-spark")
    event = glue_event(job_run)
    event["detail"]["jobName"] = "closedloop-prep-spark"
    # When route 2 hears the run succeeded
    outcome = invoke(load_handler("start_training"), event)
    # Then training starts on it, recorded as the Spark engine's
    assert (outcome["result"], outcome["engine"], outcome["run_id"]) == ("started", "glue-spark", run.run_id)
    assert parameters_of(outcome["execution_arn"])[lineage.PARAM_PREP_RUN_ID] == run.run_id
