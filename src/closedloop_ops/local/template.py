"""Load `template.yaml` and transform it with aws-sam-translator, offline, as `sam deploy` would."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


class TemplateError(Exception):
    """The template cannot be loaded or transformed (the message says which resource and why)."""


@dataclass
class Template:
    """A SAM template and its CloudFormation transform."""

    path: Path
    sam: dict[str, Any]
    cfn: dict[str, Any]
    code_dirs: dict[str, Path] = field(default_factory=dict)  # function logical id → code directory

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.cfn.get("Parameters", {}))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.cfn.get("Resources", {}))


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation YAML template (short-form intrinsics become `Fn::…` dicts)."""
    from cfnlint.decode.cfn_yaml import load

    try:
        document = load(str(path))
    except Exception as exc:  # cfn-lint raises several YAML error types
        raise TemplateError(f"{path}: {exc}") from exc
    result: dict[str, Any] = json.loads(json.dumps(document))
    return result


class _NoManagedPolicies:
    """The translator asks for AWS managed policy names only when a template uses them by name."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(path: Path, region: str = "eu-west-1") -> Template:
    """Read and transform a SAM template without AWS access.

    Raises:
        TemplateError: the template is not valid SAM.
    """
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    sam = read_yaml(path)
    staged = copy.deepcopy(sam)
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in staged.get("Resources", {}).items():
        prop = CODE_PROPERTIES.get(resource.get("Type", ""))
        if prop is None:
            continue
        local = resource.get("Properties", {}).get(prop)
        if isinstance(local, str) and not local.startswith("s3://"):
            code_dirs[logical_id] = (path.parent / local).resolve()
        resource.setdefault("Properties", {})[prop] = f"s3://local-code/{logical_id}"
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        cfn = transform(staged, {}, _NoManagedPolicies())
    except InvalidDocumentException as exc:
        raise TemplateError("; ".join(str(e) for e in exc.causes)) from exc
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
    return Template(path=path, sam=sam, cfn=cfn, code_dirs=code_dirs)
