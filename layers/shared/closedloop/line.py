"""Model lines: the unit the loop serves, declared as data, one file per line.

A model line is a dataset policy (`closedloop/lines/<name>.json`: columns, PII handling, label)
together with what the loop does with the model trained on it: its approval mode, approvers and
policy floors, and its retraining cooldown and extra alarms. Everything else a line owns is named
after it, the same way here and in `template.yaml` (a block per line file, made when the
`ModelLines` parameter lists the line): model package group and endpoint `<prefix>-<line>`, drift alarms
`<prefix>-<line>-drift-{features,predictions,bias,attributions}`, endpoint health alarms
`<prefix>-<line>-endpoint-{5xx,latency}`, drift schedule `<prefix>-<line>-drift`. Raw files of a
line arrive under `raw/<line>/`.

Every route resolves the line from its event (key prefix, model group, endpoint, alarm, schedule
input, prepared manifest) and works with the line's `Settings` (`LineCatalog.settings_for`): the
stack's settings with the line's names and overrides. A name no active line owns resolves to
`None`, and the route treats the event as not its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Generic, TypeVar

from pydantic import ConfigDict, Field, model_validator

from closedloop.dataprep.policy import DatasetPolicy, validate_document
from closedloop.errors import DatasetPolicyError, UnknownDatasetError
from closedloop.featurestore import FeatureStoreSpec, check_spec
from closedloop.model import Model
from closedloop.settings import ApprovalMode, Settings

# A line's name is part of AWS resource names (endpoint and model group: 63 characters with the
# stack's prefix of up to 20) and of template logical ids (`&{Line}` drops hyphens).
LINE_NAME = re.compile(r"^[a-z](-?[a-z0-9]){0,29}$")
DRIFT_ALARMS = ("drift-features", "drift-predictions", "drift-bias", "drift-attributions")
S = TypeVar("S")
ENDPOINT_ALARMS = ("endpoint-5xx", "endpoint-latency")
UNIT = 1.0


class ApprovalOverrides(Model):
    """The line's approval gate, where it differs from the stack's parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: ApprovalMode | None = Field(default=None, description="auto: the policy decides; manual: an approver does")
    approvers: tuple[str, ...] | None = Field(default=None, description="IAM principal ARNs allowed to approve")
    min_auc: float | None = Field(default=None, ge=0, le=UNIT)
    min_f1: float | None = Field(default=None, ge=0, le=UNIT)
    min_accuracy: float | None = Field(default=None, ge=0, le=UNIT)
    champion_tolerance: float | None = Field(default=None, ge=0, le=UNIT)
    min_disparate_impact: float | None = Field(default=None, ge=0, le=UNIT)
    max_abs_dppl: float | None = Field(default=None, ge=0, le=UNIT)


class RetrainingOverrides(Model):
    """The line's retraining, where it differs from the stack's parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cooldown_seconds: int | None = Field(default=None, ge=0, description="quiet time after a retraining starts")
    alarms: tuple[str, ...] = Field(
        default=(),
        description="alarms of the stack's ExtraAlarmNames that retrain this line (e.g. a Model Monitor alarm)",
    )


class LineSpec(DatasetPolicy):
    """One model line: its dataset policy (the `dataset` field is the line's name) and its loop."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_url: str | None = Field(default=None, alias="$schema", description="the JSON Schema, for editors")
    approval: ApprovalOverrides = Field(default_factory=ApprovalOverrides)
    retraining: RetrainingOverrides = Field(default_factory=RetrainingOverrides)
    feature_store: FeatureStoreSpec = Field(default_factory=FeatureStoreSpec)

    @model_validator(mode="after")
    def _named_for_aws(self) -> LineSpec:
        if not LINE_NAME.match(self.dataset):
            raise ValueError(
                "the line's name (field 'dataset') must be 1-30 lower-case letters, digits and single "
                "hyphens, starting with a letter: it names AWS resources"
            )
        check_spec(self.feature_store, self)
        return self

    @property
    def name(self) -> str:
        return self.dataset

    def dataset_policy(self) -> DatasetPolicy:
        """The preparation's part of the line (what `prepare.py` and its manifest see)."""
        fields = set(DatasetPolicy.model_fields)
        return DatasetPolicy.model_validate(self.model_dump(include=fields))


@dataclass(frozen=True)
class LineResources:
    """The AWS names a line owns, derived from the stack's prefix and the line's name."""

    line: str
    model_package_group: str
    endpoint_name: str
    drift_alarms: tuple[str, ...]
    endpoint_alarms: tuple[str, ...]
    drift_schedule: str
    raw_prefix: str
    feature_group: str = ""

    @classmethod
    def of(cls, resource_prefix: str, raw_prefix: str, line: str) -> LineResources:
        base = f"{resource_prefix}-{line}"
        return cls(
            line=line,
            model_package_group=base,
            endpoint_name=base,
            drift_alarms=tuple(f"{base}-{kind}" for kind in DRIFT_ALARMS),
            endpoint_alarms=tuple(f"{base}-{kind}" for kind in ENDPOINT_ALARMS),
            drift_schedule=f"{base}-drift",
            raw_prefix=f"{raw_prefix}{line}/",
            feature_group=base,
        )


def parse_line(text: str, *, source: str) -> LineSpec:
    """Validate a line document.

    Raises:
        DatasetPolicyError: the document is not valid JSON or breaks a rule; the message names
            every problem by its field path.
    """
    return validate_document(LineSpec, text, source=source, what="model line")


@cache
def load_line(name: str) -> LineSpec:
    """The line shipped with closedloop under this name.

    Raises:
        UnknownDatasetError: no line of this name is declared.
        DatasetPolicyError: the declared line is invalid, or its file names another line.
    """
    if not LINE_NAME.match(name):
        raise UnknownDatasetError("the name is not a model line's name", name_length=len(name))
    document = resources.files("closedloop.lines").joinpath(f"{name}.json")
    if not document.is_file():
        raise UnknownDatasetError(f"no model line {name!r} is declared", dataset=name)
    spec = parse_line(document.read_text(encoding="utf-8"), source=f"{name}.json")
    if spec.name != name:
        raise DatasetPolicyError(f"{name}.json declares the line {spec.name!r}", source=f"{name}.json")
    return spec


def known_lines() -> list[str]:
    """Every line whose file ships with closedloop (deployed or not)."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in resources.files("closedloop.lines").iterdir()
        if entry.name.endswith(".json")
    )


class LineCatalog:
    """The stack's active lines (`MODEL_LINES`) and the settings each route works with for one."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._names = tuple(settings.model_lines) or tuple(known_lines())
        self._resources = {
            name: LineResources.of(settings.resource_prefix, settings.raw_prefix, name) for name in self._names
        }
        self._bound: dict[str, Settings] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def resources(self, line: str) -> LineResources:
        return self._resources[line]

    def spec(self, line: str) -> LineSpec:
        return load_line(line)

    def settings_for(self, line: str) -> Settings:
        """The stack's settings as the line's routes see them: its names and its overrides.

        Raises:
            UnknownDatasetError: the line is not active in this stack, or has no file.
        """
        bound = self._bound.get(line)
        if bound is None:
            if line not in self._resources:
                raise UnknownDatasetError(f"model line {line!r} is not deployed in this stack", dataset=line)
            bound = bind_line(self._settings, self.spec(line), self._resources[line])
            self._bound[line] = bound
        return bound

    def by_dataset(self, dataset: str) -> str | None:
        return dataset if dataset in self._resources else None

    def by_model_group(self, group: str) -> str | None:
        return next((n for n, r in self._resources.items() if r.model_package_group == group), None)

    def by_endpoint(self, endpoint: str) -> str | None:
        wanted = endpoint.lower()  # SageMaker compares endpoint names without case
        return next((n for n, r in self._resources.items() if r.endpoint_name.lower() == wanted), None)

    def by_alarm(self, alarm: str) -> str | None:
        """The line an alarm belongs to: its drift or endpoint alarms, or an extra alarm it claims."""
        for name, owned in self._resources.items():
            if alarm in owned.drift_alarms or alarm in owned.endpoint_alarms:
                return name
        for name in self._names:
            if alarm in self.spec(name).retraining.alarms:
                return name
        return None


def bind_line(settings: Settings, spec: LineSpec, owned: LineResources) -> Settings:
    """`settings` with the line's resource names and the overrides its file declares."""
    approval = {key: value for key, value in spec.approval.model_dump().items() if value is not None}
    if "mode" in approval:
        approval["approval_mode"] = approval.pop("mode")
    update = {
        **approval,
        "line": spec.name,
        "model_package_group": owned.model_package_group,
        "endpoint_name": owned.endpoint_name,
        "retraining_alarm_names": owned.drift_alarms,
        "extra_alarm_names": tuple(a for a in spec.retraining.alarms if a in settings.extra_alarm_names),
        "rollback_alarm_names": (*owned.endpoint_alarms, *owned.drift_alarms),
        "alarm_prefix": f"{owned.endpoint_name}-",
    }
    if spec.retraining.cooldown_seconds is not None:
        update["retrain_cooldown_s"] = spec.retraining.cooldown_seconds
    return settings.model_copy(update=update)


def unbound(settings: Settings) -> Settings:
    """The settings of no line: no group, endpoint or alarm of any line matches them."""
    return settings.model_copy(
        update={
            "line": "",
            "model_package_group": "",
            "endpoint_name": "",
            "retraining_alarm_names": (),
            "extra_alarm_names": (),
            "rollback_alarm_names": (),
        }
    )


class PerLine(Generic[S]):
    """One service instance per model line, built on first use with the line's settings.

    An event no deployed line owns gets the instance built with the stack's own settings, whose
    model group and endpoint are empty: the service's "not this stack's" path records it.
    """

    def __init__(self, settings: Settings, build: Callable[[Settings], S]) -> None:
        self.catalog = LineCatalog(settings)
        self._settings = settings
        self._build = build
        self._instances: dict[str | None, S] = {}

    def __getitem__(self, line: str | None) -> S:
        instance = self._instances.get(line)
        if instance is None:
            settings = unbound(self._settings) if line is None else self.catalog.settings_for(line)
            instance = self._instances[line] = self._build(settings)
        return instance

    def deployed(self, line: str) -> S:
        """The instance of a line named by the event itself (a schedule's input).

        Raises:
            UnknownDatasetError: no line of that name is deployed in this stack.
        """
        if self.catalog.by_dataset(line) is None:
            raise UnknownDatasetError(f"model line {line!r} is not deployed in this stack (ModelLines)", dataset=line)
        return self[line]
