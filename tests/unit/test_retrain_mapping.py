"""Route 6's mapping: only the alarms the template declares retrain — never a name prefix."""

from __future__ import annotations

import pytest

from closedloop.errors import UnknownAlarmError
from closedloop.retrain.mapping import resolve_alarm
from closedloop.settings import Settings
from support.stack import stack_env


def settings(**env: str) -> Settings:
    return Settings.from_environ({**stack_env(), **env})


@pytest.mark.parametrize(
    "name", ["closedloop-loans-drift-features", "closedloop-loans-drift-predictions", "closedloop-loans-drift-bias"]
)
def test_the_stacks_drift_alarms_retrain(name: str) -> None:
    # Given the drift alarms the template passes in RETRAINING_ALARM_NAMES
    # When one is resolved
    target = resolve_alarm(name, {}, settings())
    # Then it retrains this stack's model group, matched as one of the stack's own
    assert (target.model_group, target.matched_by, target.operational) == ("closedloop-loans", "stack", False)


@pytest.mark.parametrize("name", ["closedloop-lambda-errors", "closedloop-model-quality", "closedloop-", "drift"])
def test_a_name_sharing_the_prefix_is_not_a_retraining_alarm(name: str) -> None:
    # Given an alarm named with the stack's prefix that the template does not declare as drift
    # When it is resolved
    with pytest.raises(UnknownAlarmError) as caught:
        resolve_alarm(name, {}, settings())
    # Then it is refused, saying what would make it one
    assert "not a retraining alarm of this stack" in caught.value.message
    assert "ExtraAlarmNames" in caught.value.message


def test_a_listed_alarm_retrains_by_its_exact_name_only() -> None:
    # Given an operator's alarm listed in ExtraAlarmNames
    listed = settings(EXTRA_ALARM_NAMES="closedloop-model-quality,mm-violations")
    # Then it retrains, matched by name, and a look-alike does not
    assert resolve_alarm("closedloop-model-quality", {}, listed).matched_by == "name"
    with pytest.raises(UnknownAlarmError):
        resolve_alarm("closedloop-model-quality-2", {}, listed)


def test_without_the_declared_list_nothing_retrains() -> None:
    # Given an environment without RETRAINING_ALARM_NAMES (a prefix alone proves nothing)
    bare = settings(RETRAINING_ALARM_NAMES="")
    # Then even a drift alarm's name is refused, visibly, instead of falling back to the prefix
    with pytest.raises(UnknownAlarmError, match="no line owns it"):
        resolve_alarm("closedloop-loans-drift-features", {}, bare)


@pytest.mark.parametrize("listed", ["", "closedloop-loans-endpoint-5xx"])
def test_endpoint_health_alarms_never_retrain_even_when_listed(listed: str) -> None:
    # Given an endpoint health alarm, unlisted or listed by mistake
    target = resolve_alarm("closedloop-loans-endpoint-5xx", {}, settings(EXTRA_ALARM_NAMES=listed))
    # Then it is operational: recorded as a suppression by the service, never a retraining
    assert target.operational and target.matched_by == "operational"


def test_a_tag_naming_another_group_is_refused() -> None:
    with pytest.raises(UnknownAlarmError, match="other-models"):
        resolve_alarm("closedloop-loans-drift-bias", {"closedloop:model-group": "other-models"}, settings())
