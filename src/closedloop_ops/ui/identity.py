"""Acting as a role: the console (and `approve`/`reject`) with `--assume-role`, as on AWS.

A compliance officer usually holds the approver role through `sts:AssumeRole` (the allow-list names
roles, not people). `assume_role` makes that call with the caller's own credentials and returns the
same stack with the role session's credentials, so the registry records
`arn:aws:sts::…:assumed-role/<Role>/<session>`. On the local loop it is the same STS call to the
emulator (the loop creates the roles on its allow-list, `closedloop demo --approval-mode manual`).
"""

from __future__ import annotations

import getpass
import re

from closedloop_ops.cli_errors import CliError
from closedloop_ops.stackref import StackRef, sts_credentials


def session_name(requested: str | None = None) -> str:
    """A valid RoleSessionName: the one asked for, else the login name (`closedloop` if there is none)."""
    if requested:
        name = requested
    else:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            name = "closedloop"
    cleaned = re.sub(r"[^\w+=,.@-]", "-", name)[:64]
    return cleaned if len(cleaned) >= 2 else "closedloop"


def assume_role(stack: StackRef, role_arn: str, session: str | None = None) -> StackRef:
    """The same stack, called as a session of `role_arn` (STS AssumeRole with the current credentials).

    Raises:
        CliError: not a role ARN, or STS refused (with what it said).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:role/.+", role_arn):
        raise CliError(f"--assume-role {role_arn!r}: expected a role ARN such as arn:aws:iam::111122223333:role/Name")
    try:
        credentials = stack.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name(session))[
            "Credentials"
        ]
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot assume {role_arn}: {exc}") from None
    return StackRef(
        name=stack.name,
        region=stack.region,
        outputs=stack.outputs,
        endpoint_url=stack.endpoint_url,
        credentials=sts_credentials(credentials),
        local=stack.local,
    )
