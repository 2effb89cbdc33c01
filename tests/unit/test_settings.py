"""`Settings` against the environment `template.yaml` really gives each function.

The template is read and transformed the way `sam deploy` does it (aws-sam-translator merges
`Globals.Function.Environment` into every function), its intrinsics evaluated with the parameters'
defaults and the values CloudFormation returns for each resource type. Nothing here lists the
variables the template sets: whatever it says at run time is what is checked.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from closedloop.errors import SettingsError
from closedloop.settings import DataPrepEngine, Settings
from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.template import Template, load_template
from support.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]
STACK, REGION, ACCOUNT = "closedloop", "eu-west-1", "123456789012"
PSEUDO = {
    "AWS::StackName": STACK,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0f1e2d3c",
}
# What the Lambda runtime sets in every function's environment (not the template)
RUNTIME = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_LAMBDA_FUNCTION_NAME": "fn"}
# Settings the template deliberately leaves to their defaults: the layout of the buckets and fixed
# limits, which no deployment tunes (a parameter would only invite a mismatch with the pipeline)
FIXED_DEFAULTS = {
    "PREPARED_PREFIX": "where preparation writes in the data bucket; the pipeline reads the same",
    "MANIFESTS_PREFIX": "where run manifests go in the data bucket",
    "CAPTURE_PREFIX": "where endpoint data capture writes; the drift monitor reads the same",
    "IDEMPOTENCY_TTL_SECONDS": "how long a business key is remembered",
    "PROCESSING_MAX_RUNTIME_SECONDS": "the preparation job's stopping condition",
}
# Settings each route takes from the model line an event belongs to (closedloop.line.bind_line),
# never from the environment: the line's names are derived from ResourcePrefix and ModelLines
LINE_BOUND = {
    "MODEL_PACKAGE_GROUP",
    "ENDPOINT_NAME",
    "RETRAINING_ALARM_NAMES",
    "ROLLBACK_ALARM_NAMES",
    "CLOSEDLOOP_BOUND_LINE",
}
# Variables the template sets that Settings ignores on purpose: Powertools reads them itself
READ_BY_POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_LOGGER_LOG_EVENT",
}
ALIASES = {field.alias or name: name for name, field in Settings.model_fields.items()}


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml", region=REGION)


def _physical(logical_id: str, resource: dict[str, Any], resolver: Resolver) -> str:
    """What `Ref` returns for a resource, by type (CloudFormation's documented return values)."""
    kind = resource["Type"]
    props = resource.get("Properties", {})
    named = next((props[p] for p in ("BucketName", "TableName", "AlarmName", "Name", "TopicName") if p in props), None)
    name = str(resolver.resolve(named)) if named is not None else f"{STACK}-{logical_id}-1A2B3C4D".lower()
    if kind == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
    if kind == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
    return name


def _arn(logical_id: str, resource: dict[str, Any], name: str) -> str:
    service = resource["Type"].split("::")[1].lower()
    if service == "iam":
        return f"arn:aws:iam::{ACCOUNT}:role/{name}"
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical_id.lower()}/{name}"


def environments(**parameters: str) -> dict[str, dict[str, str]]:
    """Each function's environment as deployed with the template's defaults (and `parameters`)."""
    cfn = template().cfn
    values = {name: str(p.get("Default", "")) for name, p in cfn.get("Parameters", {}).items()}
    values.update(parameters)
    resources = cfn["Resources"]
    resolver: Resolver

    def ref(logical_id: str) -> str:
        return _physical(logical_id, resources[logical_id], resolver)

    def get_att(logical_id: str, attribute: str) -> str:
        assert attribute == "Arn", f"no stand-in for {logical_id}.{attribute}"
        return _arn(logical_id, resources[logical_id], ref(logical_id))

    resolver = Resolver(
        parameters=values,
        pseudo=PSEUDO,
        mappings=cfn.get("Mappings", {}),
        conditions=cfn.get("Conditions", {}),
        ref=ref,
        get_att=get_att,
    )
    found = {
        logical_id: {k: str(v) for k, v in resolver.resolve(r["Properties"]["Environment"]["Variables"]).items()}
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and "Environment" in r.get("Properties", {})
    }
    assert found, "the template declares no function environment"
    return found


def _rendered(value: Any) -> str:
    """A settings value as the environment would spell it."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _same(env_value: str, setting: Any) -> bool:
    if isinstance(setting, bool) or not isinstance(setting, int | float):
        return ",".join(p.strip() for p in env_value.split(",") if p.strip()) == _rendered(setting)
    return float(env_value) == float(setting)


@pytest.mark.parametrize("engine", [e.value for e in DataPrepEngine])
def test_settings_validate_every_functions_environment_with_the_default_parameters(engine: str) -> None:
    # Given each function's environment as the template sets it (DataPrepEngine chosen, the rest default)
    for function, variables in environments(DataPrepEngine=engine).items():
        # When the function validates its settings at cold start
        settings = Settings.from_environ({**RUNTIME, **variables})
        # Then every variable the template sets is the value the setting holds
        for variable, value in variables.items():
            if variable in ALIASES:
                held = getattr(settings, ALIASES[variable])
                assert _same(value, held), (function, variable, value, held)
        assert settings.data_prep_engine is DataPrepEngine(engine)
        assert bool(settings.glue_job_name) is (engine in ("glue", "auto")), function
        assert bool(settings.glue_spark_job_name) is (engine in ("glue-spark", "auto")), function


def test_every_setting_is_set_by_the_template_or_deliberately_left_to_its_default() -> None:
    # Given the variables the template sets on any function, and those the runtime sets
    set_by_template = set().union(*(variables.keys() for variables in environments().values()))
    # Then each field of Settings is one of them, or one of the few deliberately fixed defaults
    unset = set(ALIASES) - set_by_template - set(RUNTIME) - LINE_BOUND
    assert unset == set(FIXED_DEFAULTS), "a setting no function receives: set it in template.yaml"
    assert not LINE_BOUND & set_by_template, "the template sets a setting that belongs to a model line"
    assert not set(FIXED_DEFAULTS) & set_by_template, "the template sets a setting declared fixed here"


def test_the_template_sets_no_variable_that_settings_ignores() -> None:
    # Given every variable any function gets from the template
    for function, variables in environments().items():
        # Then each is a field of Settings, or read by Powertools (Settings ignores unknown names,
        # so a misspelt variable would leave its setting at the default without a word)
        ignored = set(variables) - set(ALIASES) - READ_BY_POWERTOOLS
        assert not ignored, (function, sorted(ignored))


def test_the_tests_stand_in_environment_sets_what_the_template_sets_for_every_function() -> None:
    # Given the settings every function gets (the ones all environments of the template share)
    shared = set.intersection(*(set(variables) for variables in environments().values())) & set(ALIASES)
    # Then `support.stack.stack_env`, which the other suites use as "the template's environment",
    # sets every one of them too (else those suites run with a default the stack never has)
    assert shared - set(stack_env()) == set()


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("DATA_BUCKET", None, "DATA_BUCKET"),
        ("DATA_PREP_ENGINE", "spark", "DATA_PREP_ENGINE"),
        ("RAW_PREFIX", "raw", "RAW_PREFIX"),
        ("RAW_PREFIX", "../raw/", "RAW_PREFIX"),
        ("NOTIFICATION_TOPIC_ARN", "not-an-arn", "NOTIFICATION_TOPIC_ARN"),
        ("PREP_JOB_PREFIX", "Bad_Prefix!", "PREP_JOB_PREFIX"),
    ],
)
def test_a_bad_environment_names_the_variable(name: str, value: str | None, named: str) -> None:
    # Given the template's environment of one function with one variable missing or invalid
    env = {**RUNTIME, **environments()["StartDataPrepFunction"]}
    if value is None:
        del env[name]
    else:
        env[name] = value
    # When / Then validation fails with the variable's name in the message
    with pytest.raises(SettingsError, match=named):
        Settings.from_environ(env)
