"""The CI/CD workflow users get: tests on pull requests, an OIDC deploy to dev and the pipeline upsert on main."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


def load() -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as True
    return document


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_pull_requests_run_make_test_with_read_only_rights() -> None:
    workflow = load()
    assert set(workflow["on"]) >= {"pull_request", "push"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read"}
    assert runs(workflow["jobs"]["test"]) == ["make test"]


def test_main_deploys_to_dev_with_oidc_and_upserts_the_pipeline() -> None:
    job = load()["jobs"]["deploy-dev"]
    assert job["needs"] == "test"
    assert "github.event_name == 'push'" in job["if"] and "refs/heads/main" in job["if"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (credentials,) = [
        s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials["with"])
    commands = runs(job)
    order = [
        next(i for i, c in enumerate(commands) if needle in c)
        for needle in (
            "make build",
            "sam deploy --config-env dev",
            "pipelines/definition.py",
            "closedloop pipeline upsert",
        )
    ]
    assert order == sorted(order)
    assert job["steps"].index(credentials) < next(
        i for i, s in enumerate(job["steps"]) if "make build" in s.get("run", "")
    )


def test_the_stages_deploy_after_dev_each_with_its_own_account_role_and_environment() -> None:
    job = load()["jobs"]["deploy-stages"]
    assert job["needs"] == "deploy-dev" and "vars.STAGING_ACCOUNT_ID" in job["if"]
    assert job["strategy"]["matrix"]["stage"] == ["staging", "prod"] and job["strategy"]["max-parallel"] == 1
    assert job["environment"] == "${{ matrix.stage }}"  # prod's reviewers guard its stack
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (credentials,) = [
        s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"  # the environment's
    (deploy,) = [c for c in runs(job) if "sam deploy" in c]
    for parameter in ("BuildAccountId=", "BuildArtifactsBucket=", "PromoteFromAccountId=", "Approvers="):
        assert parameter in deploy
    assert '--config-env "$STAGE"' in deploy
    dev = load()["jobs"]["deploy-dev"]
    assert "StageAccountIds=" in next(c for c in runs(dev) if "sam deploy --config-env dev" in c)
