"""Several accounts in one local loop: dev trains and approves, staging and prod serve (docs/multi-account.md).

moto keeps accounts apart by credentials, so one moto server holds them all: each stage's stack is
provisioned from the same `template.yaml` into its own account, with the parameters a real
deployment of that stage takes (`stage_parameters`), and each gets its own loop (dispatcher, job
runner, endpoint watcher, alarms). What crosses an account boundary crosses it as on AWS: stage
changes through the template's cross-account rules and bus policies, model versions through the
model group's resource policy (`moto_ext.accounts`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from closedloop_ops.local.loop import LOCAL_ACCOUNT, REGION, ROOT, LocalLoop, moto_server
from closedloop_ops.stackref import LOCAL_CREDENTIALS, admin_session

# The local accounts of the stages (moto's default account trains, as `closedloop demo` does).
STAGE_ACCOUNTS = {"dev": LOCAL_ACCOUNT, "staging": "222222222222", "prod": "333333333333"}
PROD_APPROVER = "ProdApprover"


def approver_role(stage: str, accounts: dict[str, str] = STAGE_ACCOUNTS) -> str:
    """The allow-listed approver role of a stage that releases by hand (prod)."""
    return f"arn:aws:iam::{accounts[stage]}:role/{PROD_APPROVER if stage == 'prod' else 'ComplianceOfficer'}"


def stage_parameters(
    stages: list[str], build_artifacts_bucket: str = "", accounts: dict[str, str] = STAGE_ACCOUNTS
) -> dict[str, dict[str, str]]:
    """Each stage's template parameters: the first stage trains; each later one promotes from the one
    before it; the last releases by an approver (`manual`), the others by policy (`auto`)."""
    build = accounts[stages[0]]
    parameters: dict[str, dict[str, str]] = {}
    for index, stage in enumerate(stages):
        later = stages[index + 1] if index + 1 < len(stages) else None
        values = {"Stage": stage, "PromoteToAccountId": accounts[later] if later else ""}
        if index == 0:
            values["StageAccountIds"] = ",".join(accounts[s] for s in stages[1:])
        else:
            values.update(
                BuildAccountId=build,
                BuildArtifactsBucket=build_artifacts_bucket,
                PromoteFromAccountId=accounts[stages[index - 1]],
            )
        if index > 0 and later is None:
            values.update(ApprovalMode="manual", Approvers=approver_role(stage, accounts))
        parameters[stage] = values
    return parameters


def account_credentials(endpoint_url: str, account: str, region: str = REGION) -> dict[str, str]:
    """boto3 keyword arguments for `account` of the local moto (its administrator role's session)."""
    if account == LOCAL_ACCOUNT:
        return {}
    return admin_session(endpoint_url, region, account, dict(LOCAL_CREDENTIALS))


@dataclass
class LocalEstate:
    """The stages' loops on one moto server, the first stage's being the one that trains."""

    endpoint_url: str
    loops: dict[str, LocalLoop] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def build(self) -> LocalLoop:
        return next(iter(self.loops.values()))

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        stages: list[str],
        *,
        parameters: dict[str, str] | None = None,
        root: Path = ROOT,
        stack_prefix: str = "closedloop",
        region: str = REGION,
    ) -> Iterator[LocalEstate]:
        """Provision every stage's stack into its account (the first one first: the later ones name its
        artifacts bucket) and yield the estate.

        Raises:
            ValueError: an unknown stage name, or fewer than two stages.
        """
        unknown = [stage for stage in stages if stage not in STAGE_ACCOUNTS]
        if unknown or len(stages) < 2 or len(set(stages)) != len(stages):
            raise ValueError(f"--accounts takes two or more of {', '.join(STAGE_ACCOUNTS)}, each once")
        with moto_server(region) as endpoint_url, contextlib.ExitStack() as stack:
            estate = cls(endpoint_url=endpoint_url, accounts={s: STAGE_ACCOUNTS[s] for s in stages})
            artifacts = ""
            for stage in stages:
                values = {**(parameters or {}), **stage_parameters(stages, artifacts)[stage]}
                loop = stack.enter_context(
                    LocalLoop.attach(
                        endpoint_url,
                        root=root,
                        stack_name=f"{stack_prefix}-{stage}",
                        parameters=values,
                        region=region,
                        account=STAGE_ACCOUNTS[stage],
                        credentials=account_credentials(endpoint_url, STAGE_ACCOUNTS[stage], region),
                    )
                )
                estate.loops[stage] = loop
                artifacts = artifacts or loop.output("ArtifactsBucketName")
            from closedloop_ops.moto_ext import lambda_invoke, runtime

            lambda_invoke.set_async_router(estate.route_async_invoke)
            # one model server for every account's endpoints (InvokeEndpoint says whose), one capture buffer
            shared = estate.build.hosting
            for loop in estate.loops.values():
                loop.hosting = shared
            runtime.set_model_server(shared)
            yield estate

    def route_async_invoke(self, function: str, payload: bytes) -> bool:
        return any(loop.route_async_invoke(function, payload) for loop in self.loops.values())

    def settle(self, max_rounds: int = 60) -> int:
        """Settle every stage's loop in turn until none moves (a stage's change wakes the next)."""
        total = 0
        for _ in range(max_rounds):
            moved = sum(loop.settle(max_passes=200) for loop in self.loops.values())
            total += moved
            if not moved:
                break
        return total
