from __future__ import annotations

import pytest

from closedloop.errors import SettingsError
from closedloop.settings import DataPrepEngine, Settings
from support.stack import stack_env


def test_settings_validate_the_template_environment() -> None:
    # Given the environment the template gives every function
    env = stack_env("glue")
    # When it is validated
    settings = Settings.from_environ(env)
    # Then every value is typed
    assert settings.data_prep_engine is DataPrepEngine.GLUE
    assert settings.raw_prefix == "raw/"
    assert settings.glue_job_name == "closedloop-prep"


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
    # Given one variable missing or invalid
    env = stack_env()
    if value is None:
        del env[name]
    else:
        env[name] = value
    # When / Then validation fails with the variable's name in the message
    with pytest.raises(SettingsError, match=named):
        Settings.from_environ(env)
