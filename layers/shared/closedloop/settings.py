"""One validated settings object: template parameters → function environment → `Settings`.

The template passes every parameter to every function through `Globals.Function.Environment`,
so all functions validate the same object at cold start. Domain code receives `Settings`
(or the values it needs) as arguments and never reads `os.environ` itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from closedloop.errors import SettingsError


class DataPrepEngine(StrEnum):
    """Where a run is prepared: a Processing job or the Glue Python shell job (single node), the Glue
    Spark job (`glue-spark`), or by the run's size (`auto`: Spark from `PREP_SPARK_THRESHOLD_BYTES`)."""

    PROCESSING = "processing"
    GLUE = "glue"
    GLUE_SPARK = "glue-spark"
    AUTO = "auto"


class ApprovalMode(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


def _split_csv(value: object) -> object:
    """Template list parameters arrive as comma-separated strings."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[tuple[str, ...], BeforeValidator(_split_csv)]

_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()\-]+(/[A-Za-z0-9!_.*'()\-]+)*/$")


class Settings(BaseModel):
    """Everything a closedloop function may be configured with.

    Field aliases are the environment variable names the template sets.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # identity of the deployment
    stack_name: str = Field(alias="CLOSEDLOOP_STACK_NAME", min_length=1, max_length=64)
    resource_prefix: str = Field(default="closedloop", alias="RESOURCE_PREFIX", pattern=r"^[a-z0-9](-*[a-z0-9]){0,19}$")
    # the model lines this stack serves (`ModelLines`); empty: every line shipped in closedloop/lines
    model_lines: CsvList = Field(default=(), alias="MODEL_LINES")
    # set by `closedloop.line.bind_line` for the line an event belongs to, never by the environment
    line: str = Field(default="", alias="CLOSEDLOOP_BOUND_LINE")
    region: str = Field(alias="AWS_REGION", min_length=1)
    # the stack's account (`${AWS::AccountId}`): events and ARNs of any other account are not ours
    account_id: str = Field(alias="CLOSEDLOOP_ACCOUNT_ID", pattern=r"^\d{12}$")

    # storage
    data_bucket: str = Field(alias="DATA_BUCKET", min_length=3)
    quarantine_bucket: str = Field(alias="QUARANTINE_BUCKET", min_length=3)
    artifacts_bucket: str = Field(alias="ARTIFACTS_BUCKET", min_length=3)
    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=3)
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=3)
    notification_topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:")
    raw_prefix: str = Field(default="raw/", alias="RAW_PREFIX")
    prepared_prefix: str = Field(default="prepared/", alias="PREPARED_PREFIX")
    manifests_prefix: str = Field(default="manifests/", alias="MANIFESTS_PREFIX")

    # route 1: data preparation
    data_prep_engine: DataPrepEngine = Field(default=DataPrepEngine.PROCESSING, alias="DATA_PREP_ENGINE")
    prep_job_prefix: str = Field(alias="PREP_JOB_PREFIX", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,29}$")
    glue_job_name: str = Field(default="", alias="GLUE_JOB_NAME")
    glue_spark_job_name: str = Field(default="", alias="GLUE_SPARK_JOB_NAME")
    spark_threshold_bytes: int = Field(default=1 << 30, ge=0, alias="PREP_SPARK_THRESHOLD_BYTES")
    processing_role_arn: str = Field(default="", alias="PROCESSING_ROLE_ARN")
    processing_image_uri: str = Field(default="", alias="PROCESSING_IMAGE_URI")
    processing_instance_type: str = Field(default="ml.m5.large", alias="PROCESSING_INSTANCE_TYPE")
    processing_max_runtime_s: int = Field(default=3600, alias="PROCESSING_MAX_RUNTIME_SECONDS", ge=60)
    pseudonymisation_secret_arn: str = Field(alias="PSEUDONYMISATION_SECRET_ARN", min_length=1)
    idempotency_ttl_s: int = Field(default=7 * 24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS", ge=3600)

    # routes 2 and 3: training pipeline and approval gate
    pipeline_name: str = Field(default="closedloop-training", alias="PIPELINE_NAME", min_length=1, max_length=256)
    # the line's (`bind_line`); set in the environment only by tests that drive a service directly
    model_package_group: str = Field(default="", alias="MODEL_PACKAGE_GROUP")
    pipeline_max_runtime_s: int = Field(default=4 * 3600, alias="PIPELINE_MAX_RUNTIME_SECONDS", ge=600)
    approval_mode: ApprovalMode = Field(default=ApprovalMode.AUTO, alias="APPROVAL_MODE")
    approvers: CsvList = Field(default=(), alias="APPROVERS")
    approval_gate_role_arn: str = Field(default="", alias="APPROVAL_GATE_ROLE_ARN")
    min_auc: float = Field(default=0.75, alias="MIN_AUC", ge=0, le=1)
    min_f1: float = Field(default=0.6, alias="MIN_F1", ge=0, le=1)
    min_accuracy: float = Field(default=0.7, alias="MIN_ACCURACY", ge=0, le=1)
    champion_tolerance: float = Field(default=0.01, alias="CHAMPION_TOLERANCE", ge=0, le=1)
    min_disparate_impact: float = Field(default=0.8, alias="MIN_DISPARATE_IMPACT", ge=0, le=1)
    max_abs_dppl: float = Field(default=0.1, alias="MAX_ABS_DPPL", ge=0, le=1)

    # routes 4 and 5: rollout
    endpoint_name: str = Field(default="", alias="ENDPOINT_NAME", max_length=63)
    model_execution_role_arn: str = Field(default="", alias="MODEL_EXECUTION_ROLE_ARN")
    capture_bucket: str = Field(default="", alias="CAPTURE_BUCKET")
    capture_prefix: str = Field(default="capture/", alias="CAPTURE_PREFIX")
    capture_sampling_percent: int = Field(default=100, alias="CAPTURE_SAMPLING_PERCENT", ge=1, le=100)
    endpoint_instance_type: str = Field(default="ml.m5.large", alias="ENDPOINT_INSTANCE_TYPE")
    endpoint_instance_count: int = Field(default=2, alias="ENDPOINT_INSTANCE_COUNT", ge=1)
    traffic_routing: Literal["CANARY", "LINEAR", "ALL_AT_ONCE"] = Field(default="CANARY", alias="TRAFFIC_ROUTING")
    canary_size_percent: int = Field(default=10, alias="CANARY_SIZE_PERCENT", ge=1, le=99)
    linear_step_percent: int = Field(default=25, alias="LINEAR_STEP_PERCENT", ge=1, le=99)
    traffic_wait_s: int = Field(default=300, alias="TRAFFIC_WAIT_SECONDS", ge=0, le=3600)
    termination_wait_s: int = Field(default=600, alias="TERMINATION_WAIT_SECONDS", ge=0, le=3600)
    max_execution_timeout_s: int = Field(default=3600, alias="MAX_EXECUTION_TIMEOUT_SECONDS", ge=600, le=28800)
    rollback_alarm_names: CsvList = Field(default=(), alias="ROLLBACK_ALARM_NAMES")

    # stages across accounts (docs/multi-account.md): this stack's stage; in a stack that serves a
    # stage of another account's versions, that account (BUILD_ACCOUNT_ID) and the account whose live
    # versions it promotes (PROMOTE_FROM_ACCOUNT_ID); in the stack that trains, the accounts of its
    # stages, whose reports it records (STAGE_ACCOUNT_IDS)
    stage: str = Field(default="dev", alias="STAGE", pattern=r"^[a-z][a-z0-9-]{0,15}$")
    build_account_id: str = Field(default="", alias="BUILD_ACCOUNT_ID", pattern=r"^(\d{12})?$")
    promote_from_account_id: str = Field(default="", alias="PROMOTE_FROM_ACCOUNT_ID", pattern=r"^(\d{12})?$")
    stage_account_ids: CsvList = Field(default=(), alias="STAGE_ACCOUNT_IDS")

    # routes 6 and 7: drift and retraining
    alarm_prefix: str = Field(default="closedloop-", alias="ALARM_PREFIX", min_length=1)
    extra_alarm_names: CsvList = Field(default=(), alias="EXTRA_ALARM_NAMES")
    # the stack's own drift alarms (the template lists them by !Ref); with ExtraAlarmNames, the only
    # alarms that retrain — no name prefix does
    retraining_alarm_names: CsvList = Field(default=(), alias="RETRAINING_ALARM_NAMES")
    max_alarm_age_s: int = Field(default=3600, alias="MAX_ALARM_AGE_SECONDS", ge=60, le=21600)
    retrain_cooldown_s: int = Field(default=6 * 3600, alias="RETRAIN_COOLDOWN_SECONDS", ge=0)
    drift_metrics_namespace: str = Field(default="closedloop/Drift", alias="DRIFT_METRICS_NAMESPACE")
    drift_min_records: int = Field(default=500, alias="DRIFT_MIN_RECORDS", ge=1)
    drift_capture_settle_s: int = Field(default=300, alias="DRIFT_CAPTURE_SETTLE_SECONDS", ge=0, le=3600)
    drift_psi_threshold: float = Field(default=0.2, alias="DRIFT_PSI_THRESHOLD", gt=0)
    drift_ks_threshold: float = Field(default=0.15, alias="DRIFT_KS_THRESHOLD", gt=0, le=1)
    bias_drift_threshold: float = Field(default=0.1, alias="BIAS_DRIFT_THRESHOLD", gt=0, le=1)
    # route 7's feature attribution drift (docs/drift.md): the alarm's nDCG threshold (SageMaker's 0.9),
    # and the Clarify processing job that explains a captured window (no image or role: not measured)
    attribution_ndcg_threshold: float = Field(default=0.9, alias="ATTRIBUTION_NDCG_THRESHOLD", gt=0, le=1)
    clarify_image_uri: str = Field(default="", alias="CLARIFY_IMAGE_URI")
    attribution_job_role_arn: str = Field(default="", alias="ATTRIBUTION_JOB_ROLE_ARN")

    @property
    def trains(self) -> bool:
        """Does this stack train and approve its versions (no other account builds them)?"""
        return not self.build_account_id or self.build_account_id == self.account_id

    @field_validator("stage_account_ids")
    @classmethod
    def _are_account_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for account in value:
            if not re.fullmatch(r"\d{12}", account):
                raise ValueError("STAGE_ACCOUNT_IDS must be 12-digit AWS account ids, comma-separated")
        return value

    @field_validator("raw_prefix", "prepared_prefix", "manifests_prefix")
    @classmethod
    def _is_key_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value) or any(part in {".", ".."} for part in value.split("/")):
            raise ValueError("must be an S3 key prefix of safe characters ending in '/', e.g. 'raw/'")
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Validate settings from an environment mapping.

        Raises:
            SettingsError: a variable is missing or invalid; the message names every one.
        """
        try:
            return cls.model_validate(dict(environ))
        except ValidationError as exc:
            problems = "; ".join(f"{_alias(cls, err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False))
            raise SettingsError(f"invalid closedloop configuration: {problems}") from None


def _alias(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    field = model.model_fields.get(name)
    return (field.alias or name) if field else name


@cache
def load_settings() -> Settings:
    """The settings of this process, validated once per cold start."""
    return Settings.from_environ(os.environ)
