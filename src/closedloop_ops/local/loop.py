"""The local loop: a moto server on loopback provisioned from `template.yaml`, with the real handlers.

    with LocalLoop.start() as loop:
        loop.client("s3").put_object(Bucket=loop.output("DataBucketName"), Key="raw/loans/x.csv", Body=…)
        loop.settle()          # deliver events, run jobs, until nothing moves

Nothing here changes what a handler does: it gets the environment the template gives it, calls
AWS (moto) with its own role's credentials, and is triggered by the template's own rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop_ops import moto_ext
from closedloop_ops.local.alarms import AlarmEvaluator
from closedloop_ops.local.dispatcher import Dispatcher
from closedloop_ops.local.emitter import Emitter
from closedloop_ops.local.jobs import JobRunner
from closedloop_ops.local.provision import LocalStack, Provisioner
from closedloop_ops.local.template import load_template
from closedloop_ops.moto_ext import lambda_invoke

ROOT = Path(__file__).resolve().parents[3]
REGION = "eu-west-1"
LOCAL_ACCOUNT = "123456789012"  # moto's
# Manual approval mode's default allow-list locally: a role the loop creates, so a person can practise
# approvals by assuming it (`closedloop approve … --assume-role`, `closedloop ui --assume-role`).
LOCAL_APPROVER_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/ComplianceOfficer"


def approval_parameters(mode: str = "auto", approvers: str | None = None) -> dict[str, str]:
    """Template parameters for an approval mode: `manual` with `approvers` (default: the local ComplianceOfficer
    role), `auto` with the template's defaults."""
    if mode == "manual":
        return {"ApprovalMode": "manual", "Approvers": approvers or LOCAL_APPROVER_ROLE}
    return {}


def create_approver_roles(
    endpoint_url: str,
    region: str,
    approvers: str,
    account: str = LOCAL_ACCOUNT,
    credentials: dict[str, str] | None = None,
) -> list[str]:
    """Create the roles of the allow-list that belong to the local account (trusting the account), so that
    someone can assume them; returns the ARNs created."""
    import json

    import boto3

    from closedloop_ops.stackref import LOCAL_CREDENTIALS

    make: Any = boto3.client  # any service by name
    iam = make("iam", region_name=region, endpoint_url=endpoint_url, **(credentials or LOCAL_CREDENTIALS))
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    existing = {role["Arn"] for role in iam.list_roles()["Roles"]}
    created = []
    for arn in (a.strip() for a in approvers.split(",")):
        prefix = f"arn:aws:iam::{account}:role/"
        if not arn.startswith(prefix) or arn in existing:
            continue
        path, _, name = arn.removeprefix(prefix).rpartition("/")
        iam.create_role(RoleName=name, Path=f"/{path}/" if path else "/", AssumeRolePolicyDocument=json.dumps(trust))
        created.append(arn)
    return created


@contextmanager
def moto_server(region: str = REGION) -> Iterator[str]:
    """A moto server on a free loopback port, every account empty, with closedloop's extensions; its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_ext.install()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ["AWS_DEFAULT_REGION"] = region
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto's backends live in this process: start from empty accounts, whatever ran before
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10
        ).close()
        from closedloop_ops.moto_ext import accounts
        from closedloop_ops.moto_ext import jobs as moto_jobs

        moto_jobs.install()  # a reset also forgets the job-run transitions
        accounts.reset()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class LocalLoop:
    """A running local stack and the machinery that moves events through it."""

    stack: LocalStack
    dispatcher: Dispatcher
    runner: JobRunner
    alarms: AlarmEvaluator
    emitter: Emitter
    server: Any
    extra_workers: list[Any] = field(default_factory=list)
    executor: Any = None
    watcher: Any = None
    hosting: Any = None
    pipeline_upsert: str = ""

    @classmethod
    @contextmanager
    def start(
        cls,
        *,
        root: Path = ROOT,
        stack_name: str = "closedloop-local",
        parameters: dict[str, str] | None = None,
        region: str = REGION,
        services: bool = True,
    ) -> Iterator[LocalLoop]:
        """Start moto on a free loopback port, provision the template, yield the loop, stop.

        With `services`, the loop also plays SageMaker's part (see `serve`).
        """
        with (
            moto_server(region) as endpoint_url,
            cls.attach(
                endpoint_url, root=root, stack_name=stack_name, parameters=parameters, region=region, services=services
            ) as loop,
        ):
            yield loop

    @classmethod
    @contextmanager
    def attach(
        cls,
        endpoint_url: str,
        *,
        root: Path = ROOT,
        stack_name: str = "closedloop-local",
        parameters: dict[str, str] | None = None,
        region: str = REGION,
        services: bool = True,
        account: str = LOCAL_ACCOUNT,
        credentials: dict[str, str] | None = None,
    ) -> Iterator[LocalLoop]:
        """Provision the template into `account` of the running moto at `endpoint_url` and yield its loop.

        `credentials` (boto3 keyword arguments) reach `account` (moto tells accounts apart by them);
        none: moto's default account.
        """
        if (parameters or {}).get("ApprovalMode") == "manual":
            create_approver_roles(endpoint_url, region, (parameters or {}).get("Approvers", ""), account, credentials)
        template = load_template(root / "template.yaml", region=region)
        stack = Provisioner(
            template,
            endpoint_url=endpoint_url,
            region=region,
            stack_name=stack_name,
            parameters=parameters,
            account=account,
            credentials=credentials,
        ).provision()
        emitter = Emitter(region, account)
        loop = cls(
            stack=stack,
            dispatcher=Dispatcher(stack, base_environment={"POWERTOOLS_TRACE_DISABLED": "1"}),
            runner=JobRunner(stack, emitter, prep_script=root / "layers/shared/closedloop/prep/prepare.py"),
            alarms=AlarmEvaluator(stack, emitter),
            emitter=emitter,
            server=endpoint_url,
        )
        lambda_invoke.set_async_router(loop.route_async_invoke)
        try:
            if services:
                loop.serve(root)
            yield loop
        finally:
            from closedloop_ops.moto_ext import registry, runtime

            lambda_invoke.set_async_router(None)
            registry.on_package_change(None)
            runtime.set_model_server(None)

    def serve(self, root: Path = ROOT) -> None:
        """What SageMaker would do: run pipeline executions, host and roll out endpoints, publish
        model-package events. The training pipeline is upserted from the checked-in `pipelines/definition.json`
        (generated offline by `make pipeline`) when it exists."""
        import json

        from closedloop_ops.local.endpoint import LocalHosting
        from closedloop_ops.local.hosting_events import EndpointWatcher
        from closedloop_ops.local.pipelines import PipelineExecutor, upload_step_code
        from closedloop_ops.moto_ext import registry, runtime

        code_dir = root / "pipelines" / "steps"
        definition_path = root / "pipelines" / "definition.json"
        # a stage's stack serves versions trained in another account: it runs no training pipeline
        if definition_path.is_file() and not self.stack.parameters.get("BuildAccountId"):
            from closedloop_ops.pipeline import upsert_pipeline

            definition = definition_path.read_text(encoding="utf-8")
            result = upsert_pipeline(
                definition,
                self.output("TrainingPipelineName"),
                self.output("TrainingPipelineRoleArn"),
                self.client("sagemaker"),
            )
            uploaded = upload_step_code(self.stack, json.loads(definition), code_dir)
            self.pipeline_upsert = f"{result.action}, {len(uploaded)} code objects"
        self.executor = PipelineExecutor(self.stack, self.emitter, self.runner, code_dir)
        self.watcher = EndpointWatcher(self.stack, self.emitter)
        self.extra_workers += [self.executor.run_pending, self.watcher]
        registry.on_package_change(
            lambda account, region, package: (
                self.emitter.publish(self.emitter.model_package_state_change(package))
                if account == self.stack.account
                else None
            )
        )
        self.hosting = LocalHosting(region=self.stack.region, fallback_code_dir=code_dir)
        runtime.set_model_server(self.hosting)

    def route_async_invoke(self, function: str, payload: bytes) -> bool:
        """Queue an asynchronous invocation for the dispatcher (Lambda's own queue, locally)."""
        for local in self.stack.functions.values():
            if function in {local.name, local.arn} or function.startswith(local.arn + ":"):
                self.client("sqs").send_message(QueueUrl=local.invoke_queue_url, MessageBody=payload.decode())
                return True
        return False

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    def output(self, name: str) -> Any:
        return self.stack.outputs[name]

    def settle(self, max_passes: int = 60) -> int:
        """Deliver events and run jobs until nothing moves; returns deliveries made."""

        def work() -> int:
            done = self.runner.run_pending()
            for worker in self.extra_workers:
                done += worker()
            return done

        return self.dispatcher.run_until_idle(max_passes=max_passes, between=work)
