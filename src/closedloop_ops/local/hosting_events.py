"""Endpoint lifecycle, locally: SageMaker's blue/green deployment and the events it publishes.

moto creates endpoints `InService` at once and, with the hosting extension, can hold an
UpdateEndpoint `Updating`. The watcher plays SageMaker's part: every update is held (the new fleet
bakes), then completed — or rolled back when one of the deployment's `AutoRollbackConfiguration`
alarms is in ALARM at the end of the bake, exactly the rule SageMaker applies. Each change is
published as `SageMaker Endpoint Deployment State Change` / `SageMaker Endpoint State Change`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closedloop_ops.local.emitter import Emitter
from closedloop_ops.local.provision import LocalStack
from closedloop_ops.moto_ext import hosting


@dataclass
class DeploymentRecord:
    endpoint: str
    config: str
    outcome: str  # "created" | "updated" | "rolled-back"
    reason: str = ""


@dataclass
class EndpointWatcher:
    stack: LocalStack
    emitter: Emitter
    seen: dict[str, tuple[str, str]] = field(default_factory=dict)
    baking: set[str] = field(default_factory=set)
    deployments: list[DeploymentRecord] = field(default_factory=list)

    def _backend(self) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.stack.account][self.stack.region]

    def __call__(self) -> int:
        """One pass; returns how many events were published."""
        sm = self.stack.client("sagemaker")
        published = 0
        for name, endpoint in list(self._backend().endpoints.items()):
            status, config = endpoint.endpoint_status, endpoint.endpoint_config_name
            previous = self.seen.get(name)
            if status == "Updating" and name not in self.baking:
                self.baking.add(name)
                pending = endpoint.pending_deployment_summary["EndpointConfigName"]
                self.emitter.publish(
                    self.emitter.endpoint_deployment_state_change(
                        sm.describe_endpoint(EndpointName=name),
                        pending_config=pending,
                        variant_status="Baking",
                        status_message="Baking with traffic shifted to the new fleet (local loop).",
                    )
                )
                published += 1
            elif status == "Updating":
                self._finish(name, endpoint)
                published += 1
                continue
            elif status == "InService" and (previous is None or previous != (status, config) or (name in self.baking)):
                rolled_back = name in self.baking and previous is not None and previous[1] == config
                self.baking.discard(name)
                described = sm.describe_endpoint(EndpointName=name)
                if previous is not None:
                    self.emitter.publish(
                        self.emitter.endpoint_deployment_state_change(
                            described, pending_config=None, variant_status=None
                        )
                    )
                self.emitter.publish(self.emitter.endpoint_state_change(described))
                self.deployments.append(
                    DeploymentRecord(
                        name,
                        config,
                        "created" if previous is None else ("rolled-back" if rolled_back else "updated"),
                        described.get("FailureReason", ""),
                    )
                )
                published += 1
            if status == "InService":
                hosting.hold_next_update(self.stack.account, self.stack.region, name)
            self.seen[name] = (status, config)
        return published

    def _finish(self, name: str, endpoint: Any) -> None:
        """End the bake: roll back if a rollback alarm is in ALARM, else complete the deployment."""
        alarms = [
            a["AlarmName"]
            for a in (getattr(endpoint, "last_deployment_config", None) or {})
            .get("AutoRollbackConfiguration", {})
            .get("Alarms", [])
        ]
        firing = []
        if alarms:
            described = self.stack.client("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"]
            firing = [a["AlarmName"] for a in described if a["StateValue"] == "ALARM"]
        if firing:
            hosting.finish_update(
                self.stack.account,
                self.stack.region,
                name,
                succeeded=False,
                reason=f"Deployment rolled back: CloudWatch alarm {firing[0]} went into ALARM during baking.",
            )
        else:
            hosting.finish_update(self.stack.account, self.stack.region, name, succeeded=True)
