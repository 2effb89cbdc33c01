"""Where a closedloop stack is: a deployed CloudFormation stack, or the local loop.

Both give the same thing: the stack's outputs and a way to build clients for it. A deployed stack
is found by name with the standard AWS profile and region resolution; the local loop writes
`build/local/state.json` while it runs (`closedloop local up`, `closedloop demo --keep`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop_ops.cli_errors import CliError

STATE_FILE = Path("build/local/state.json")


@dataclass
class StackRef:
    name: str
    region: str
    outputs: dict[str, Any]
    endpoint_url: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)
    local: bool = False

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url, **self.credentials)

    def output(self, name: str) -> Any:
        if name not in self.outputs:
            raise CliError(
                f"stack {self.name} has no output {name}: is it deployed from this version of template.yaml?"
            )
        return self.outputs[name]

    def settings_environment(self) -> dict[str, str]:
        """The environment the template gives every function (read from one of them)."""
        function = self.output("StartDataPrepFunctionName")
        configuration = self.client("lambda").get_function_configuration(FunctionName=function)
        variables: dict[str, str] = configuration.get("Environment", {}).get("Variables", {})
        return {"AWS_REGION": self.region, **variables}


def write_local_state(path: Path, *, name: str, region: str, endpoint_url: str, outputs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"name": name, "region": region, "endpoint_url": endpoint_url, "outputs": outputs, "pid": os.getpid()},
            indent=2,
        ),
        encoding="utf-8",
    )


def local_stack(path: Path = STATE_FILE, endpoint_url: str | None = None) -> StackRef:
    """The running local loop.

    Raises:
        CliError: it is not running (with how to start it).
    """
    if not path.is_file():
        raise CliError("the local loop is not running: start it with `closedloop local up` (or `make demo`)")
    state = json.loads(path.read_text(encoding="utf-8"))
    url = endpoint_url or state["endpoint_url"]
    try:
        urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()  # noqa: S310 - loopback emulator
    except (urllib.error.URLError, OSError):
        raise CliError(
            f"the local loop at {url} does not answer: start it with `closedloop local up` (or `make demo`)"
        ) from None
    return StackRef(
        name=state["name"],
        region=state["region"],
        outputs=state["outputs"],
        endpoint_url=url,
        credentials={"aws_access_key_id": "local", "aws_secret_access_key": "local"},
        local=True,
    )


def aws_stack(name: str, region: str | None = None, profile: str | None = None) -> StackRef:
    """A deployed stack, found with the standard profile/region resolution.

    Raises:
        CliError: no credentials, no region, or no such stack (each with the fix).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:
        raise CliError(f"AWS profile problem: {exc}") from None
    if session.region_name is None:
        raise CliError("no AWS region: pass --region, set AWS_REGION, or configure one with `aws configure`")
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except NoCredentialsError:
        raise CliError(
            "no AWS credentials: set AWS_PROFILE or run `aws configure` (or use --local for the local loop)"
        ) from None
    except NoRegionError:
        raise CliError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise CliError(
            f"stack {name} in {session.region_name}: {message} (deploy it with `make deploy`, or pass --stack)"
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    credentials = {}
    frozen = session.get_credentials()
    if frozen is not None:
        current = frozen.get_frozen_credentials()
        credentials = {"aws_access_key_id": current.access_key, "aws_secret_access_key": current.secret_key}
        if current.token:
            credentials["aws_session_token"] = current.token
    return StackRef(name=name, region=session.region_name, outputs=outputs, credentials=credentials)
