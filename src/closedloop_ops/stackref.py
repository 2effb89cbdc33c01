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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closedloop_ops.cli_errors import CliError

if TYPE_CHECKING:
    from closedloop.line import LineResources
    from closedloop.settings import Settings

STATE_FILE = Path("build/local/state.json")
STATE_FILE_VARIABLE = "CLOSEDLOOP_STATE_FILE"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def default_state_file() -> Path:
    """Where the local loop writes its state: `$CLOSEDLOOP_STATE_FILE`, else `build/local/state.json` here."""
    return Path(os.environ.get(STATE_FILE_VARIABLE) or STATE_FILE)


def find_state_file() -> Path:
    """Where a running local loop's state is: `$CLOSEDLOOP_STATE_FILE`, else `build/local/state.json` here or
    in the nearest parent directory that has one (a notebook in docs/ finds the project's)."""
    if os.environ.get(STATE_FILE_VARIABLE):
        return Path(os.environ[STATE_FILE_VARIABLE])
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / STATE_FILE).is_file():
            return directory / STATE_FILE
    return STATE_FILE


@dataclass
class StackRef:
    """A closedloop stack: its outputs, its functions' environment, and clients for it."""

    name: str
    region: str
    outputs: dict[str, Any]
    endpoint_url: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)
    local: bool = False
    _clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _environment: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's account and region (one per service, reused)."""
        if service not in self._clients:
            import boto3

            make: Any = boto3.client  # any service by name: the typed overloads want a literal
            self._clients[service] = make(
                service, region_name=self.region, endpoint_url=self.endpoint_url, **self.credentials
            )
        return self._clients[service]

    def output(self, name: str) -> Any:
        if name not in self.outputs:
            raise CliError(
                f"stack {self.name} has no output {name}: is it deployed from this version of template.yaml?"
            )
        return self.outputs[name]

    def settings_environment(self) -> dict[str, str]:
        """The environment the template gives every function (read from one of them, once)."""
        if self._environment is None:
            function = self.output("StartDataPrepFunctionName")
            configuration = self.client("lambda").get_function_configuration(FunctionName=function)
            variables: dict[str, str] = configuration.get("Environment", {}).get("Variables", {})
            self._environment = {"AWS_REGION": self.region, **variables}
        return self._environment

    def settings(self) -> Settings:
        """The stack's validated settings, as its functions see them.

        Raises:
            CliError: the functions' environment is not a valid closedloop configuration.
        """
        from closedloop.errors import SettingsError
        from closedloop.settings import Settings

        try:
            return Settings.from_environ(self.settings_environment())
        except SettingsError as exc:
            raise CliError(f"stack {self.name}: {exc.message}") from None

    def lines(self) -> list[LineResources]:
        """The AWS names of every model line the stack serves, in `ModelLines` order (`model_lines`).

        Raises:
            CliError: the stack lacks the outputs that name them (deployed from an older template).
        """
        return model_lines(self.output)

    def line(self, name: str | None = None) -> LineResources:
        """One model line of the stack: the one named, else the stack's only line.

        Raises:
            CliError: no line of that name is deployed, or the stack serves several and none was named.
        """
        lines = self.lines()
        served = ", ".join(line.line for line in lines)
        if name is None:
            if len(lines) == 1:
                return lines[0]
            raise CliError(f"stack {self.name} serves the model lines {served}: name one")
        found = next((line for line in lines if line.line == name), None)
        if found is None:
            raise CliError(f"no model line {name!r} in stack {self.name} (it serves {served})")
        return found

    def line_of_group(self, group: str) -> LineResources | None:
        """The line whose model package group this is, if the stack serves one."""
        return next((line for line in self.lines() if line.model_package_group == group), None)

    def line_of_endpoint(self, endpoint: str) -> LineResources | None:
        """The line whose endpoint this is (SageMaker compares endpoint names without case)."""
        return next((line for line in self.lines() if line.endpoint_name.lower() == endpoint.lower()), None)

    def line_settings(self, line: LineResources) -> Settings:
        """The stack's settings as the line's routes see them: its names and its file's overrides.

        Raises:
            CliError: the functions' environment is invalid, or the line's file is missing or invalid.
        """
        from closedloop.errors import ClosedloopError
        from closedloop.line import bind_line, load_line

        try:
            return bind_line(self.settings(), load_line(line.line), line)
        except ClosedloopError as exc:
            raise CliError(f"model line {line.line}: {exc.message}") from None


def model_lines(output: Callable[[str], Any]) -> list[LineResources]:
    """The AWS names of every model line a stack serves, from its outputs `ResourcePrefix`,
    `ModelLines` (comma-joined) and `RawPrefix`, named as the template names them
    (`closedloop.line.LineResources`). `output` reads one output by name (`StackRef.output`,
    `LocalLoop.output`)."""
    from closedloop.line import LineResources

    prefix, raw_prefix = str(output("ResourcePrefix")), str(output("RawPrefix"))
    names = [name.strip() for name in str(output("ModelLines")).split(",") if name.strip()]
    return [LineResources.of(prefix, raw_prefix, name) for name in names]


def write_local_state(
    path: Path,
    *,
    name: str,
    region: str,
    endpoint_url: str,
    outputs: dict[str, Any],
    stages: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The local loop's state for the command line; `stages`: every stage's stack of a multi-account loop
    (`{stage: {"name", "account", "outputs"}}`), the first being the one `name` is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"name": name, "region": region, "endpoint_url": endpoint_url, "outputs": outputs, "pid": os.getpid()}
    if stages:
        state["stages"] = stages
    path.write_text(json.dumps(state, indent=2), encoding="utf-8")


# The role an organisation's administrator assumes in a member account (the local loop's stage accounts).
STAGE_ADMIN_ROLE = "OrganizationAccountAccessRole"


def local_stack(
    path: Path | None = None, endpoint_url: str | None = None, profile: str | None = None, stage: str | None = None
) -> StackRef:
    """The running local loop, called with the caller's credentials.

    The credentials are the standard chain's (`profile`, the environment) when there are any, so
    the registry records who made a change as on AWS; without any, a fixed local identity.

    Raises:
        CliError: it is not running (with how to start it).
    """
    path = path or find_state_file()
    if not path.is_file():
        raise CliError("the local loop is not running: start it with `closedloop local up` (or `make demo`)")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not all(isinstance(state.get(key), str) for key in ("name", "region", "endpoint_url")):
            raise KeyError("name")
        if not isinstance(state.get("outputs"), dict):
            raise KeyError("outputs")
    except (ValueError, KeyError, AttributeError):
        raise CliError(
            f"{path} is not a local loop state file: stop the loop, delete the file and start it again"
        ) from None
    url = endpoint_url or state["endpoint_url"]
    if not _answers(f"{url}/moto-api/"):
        raise CliError(f"the local loop at {url} does not answer: start it with `closedloop local up` (or `make demo`)")
    credentials = _chain_credentials(profile) or dict(LOCAL_CREDENTIALS)
    stages = state.get("stages") or {}
    if stage and stages and stage != next(iter(stages)):
        if stage not in stages:
            raise CliError(f"the local loop has no stage {stage!r} (its stages: {', '.join(stages)})")
        entry = stages[stage]
        return StackRef(
            name=entry["name"],
            region=state["region"],
            outputs=entry["outputs"],
            endpoint_url=url,
            credentials=admin_session(url, state["region"], entry["account"], credentials),
            local=True,
        )
    if stage and not stages and stage != "dev":
        raise CliError(f"the local loop has one stage; start it with `closedloop demo --accounts dev,staging,{stage}`")
    return StackRef(
        name=state["name"],
        region=state["region"],
        outputs=state["outputs"],
        endpoint_url=url,
        credentials=credentials,
        local=True,
    )


def admin_session(url: str, region: str, account: str, credentials: dict[str, str]) -> dict[str, str]:
    """Credentials in a stage's account of the local loop: its administrator role's session."""
    import boto3

    make: Any = boto3.client
    sts = make("sts", region_name=region, endpoint_url=url, **credentials)
    role = f"arn:aws:iam::{account}:role/{STAGE_ADMIN_ROLE}"
    return sts_credentials(sts.assume_role(RoleArn=role, RoleSessionName="closedloop")["Credentials"])


def sts_credentials(issued: Any) -> dict[str, str]:
    """boto3 keyword arguments for the `Credentials` STS AssumeRole issued."""
    return {
        "aws_access_key_id": issued["AccessKeyId"],
        "aws_secret_access_key": issued["SecretAccessKey"],
        "aws_session_token": issued["SessionToken"],
    }


def stage_config(stage: str, samconfig: Path = Path("samconfig.toml")) -> dict[str, str]:
    """A stage's deployment in `samconfig.toml` (`[<stage>.deploy.parameters]`): stack_name, region, profile.

    Raises:
        CliError: no samconfig.toml here, or no such environment in it.
    """
    import tomllib

    if not samconfig.is_file():
        raise CliError(f"--stage {stage}: no {samconfig} here (run the command in the project's directory)")
    config = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    deploy = (config.get(stage) or {}).get("deploy", {}).get("parameters")
    if not deploy or "stack_name" not in deploy:
        stages = [name for name, env in config.items() if isinstance(env, dict) and "deploy" in env]
        raise CliError(f"--stage {stage}: samconfig.toml has no [{stage}.deploy.parameters] (its stages: {stages})")
    return {key: str(deploy[key]) for key in ("stack_name", "region", "profile") if key in deploy}


def _chain_credentials(profile: str | None) -> dict[str, str]:
    """The caller's credentials for the local loop: a named profile's, else the environment's ({}: none).

    The instance-metadata and container providers are not consulted: on a laptop they only time out.

    Raises:
        CliError: the profile does not exist or cannot be read.
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    profile = profile or os.environ.get("AWS_PROFILE")
    if profile is None and not os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    try:
        frozen = boto3.session.Session(profile_name=profile).get_credentials()
        current = frozen.get_frozen_credentials() if frozen is not None else None
    except BotoCoreError as exc:
        raise CliError(f"AWS profile problem: {exc} (list profiles with `aws configure list-profiles`)") from None
    return _as_arguments(current)


def _as_arguments(current: Any) -> dict[str, str]:
    if current is None or not current.access_key:
        return {}
    credentials = {"aws_access_key_id": current.access_key, "aws_secret_access_key": current.secret_key}
    if current.token:
        credentials["aws_session_token"] = current.token
    return credentials


CREDENTIAL_ERRORS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "AccessDenied",
        "AccessDeniedException",
    }
)


def aws_stack(name: str, region: str | None = None, profile: str | None = None) -> StackRef:
    """A deployed stack, found with the standard profile/region resolution.

    Raises:
        CliError: no credentials, expired or refused credentials, no region, or no such stack (each with the fix).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:
        raise CliError(f"AWS profile problem: {exc} (list profiles with `aws configure list-profiles`)") from None
    if session.region_name is None:
        raise CliError("no AWS region: pass --region, set AWS_REGION, or configure one with `aws configure`")
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        current = session.get_credentials()
        credentials = _as_arguments(current.get_frozen_credentials() if current is not None else None)
    except NoCredentialsError:
        raise CliError(
            "no AWS credentials: set AWS_PROFILE or run `aws configure` / `aws sso login` "
            "(or use --local for the local loop)"
        ) from None
    except NoRegionError:
        raise CliError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message", str(exc))
        if error.get("Code") in CREDENTIAL_ERRORS:
            raise CliError(
                f"AWS refused your credentials ({error.get('Code')}: {message}): renew them "
                "(`aws sso login`, or new keys) or pass --profile"
            ) from None
        raise CliError(
            f"stack {name} in {session.region_name}: {message} (deploy it with `make deploy`, or pass --stack/--region)"
        ) from None
    except BotoCoreError as exc:
        raise CliError(f"cannot reach AWS in {session.region_name}: {exc} (check the network and --region)") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return StackRef(name=name, region=session.region_name, outputs=outputs, credentials=credentials)


def _answers(url: str, attempts: int = 3, timeout: float = 10.0) -> bool:
    """Whether the emulator answers; a busy loop (a pipeline step running) may take seconds, so try again."""
    for _ in range(attempts):
        try:
            urllib.request.urlopen(url, timeout=timeout).close()  # noqa: S310 - loopback emulator
        except urllib.error.HTTPError:
            return True  # it answered, with an error status: it is up
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(getattr(exc, "reason", None), ConnectionRefusedError) or isinstance(
                exc, ConnectionRefusedError
            ):
                return False  # nothing listens there: no point in waiting
            continue
        else:
            return True
    return False
