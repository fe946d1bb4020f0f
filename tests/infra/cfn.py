"""Helpers for reading the CloudFormation templates under cicd/ in tests: loading, IAM statements, parameter
values per environment, and ARNs resolved to concrete example strings (IAM wildcards kept)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from tests.infra import CICD, ROOT

SETUP = CICD / "1-setup" / "template.yml"
PIPELINE = CICD / "2-cicd" / "template.yml"
APP = CICD / "3-app" / "aiproxy" / "template.yml"
PARAMS = CICD / "3-app" / "aiproxy" / "params"
ENVIRONMENTS = ("development", "test", "production")

# Example values that stand for the pseudo parameters and the setup stack's parameters in resolved ARNs.
EXAMPLE = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "ServiceName": "aiproxy",
    "ProductionDnsRecord": "ai.example.com",
    "TestDnsRecord": "ai-test.example.com",
    "DevelopmentDnsRecord": "ai-dev.example.com",
    "BedrockModelArns": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
}
# What !GetAtt X.Arn / !Ref X of the setup stack's own resources stand for in resolved ARNs.
EXAMPLE_ATTS = {
    "Key.Arn": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    "ArtifactBucket.Arn": "arn:aws:s3:::aiproxy-setup-artifactbucket-0123456789ab",
    "AccessLogBucket.Arn": "arn:aws:s3:::aiproxy-setup-accesslogbucket-0123456789ab",
    "Repository.Arn": "arn:aws:ecr:us-east-1:123456789012:repository/aiproxy",
    "GitHubConnection": "arn:aws:codestar-connections:us-east-1:123456789012:connection/0000-1111",
    "PipelineTopic": "arn:aws:sns:us-east-1:123456789012:aiproxy-pipeline",
}




def _role_arns() -> dict[str, str]:
    """``X.Arn`` of the setup stack's named roles, as IAM spells them."""
    out = {}
    for name, res in load(SETUP)["Resources"].items():
        role_name = res.get("Properties", {}).get("RoleName") if res["Type"] == "AWS::IAM::Role" else None
        if role_name:
            out[f"{name}.Arn"] = "arn:aws:iam::123456789012:role/" + resolve(role_name, {})
    return out


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@lru_cache(maxsize=None)
def _load_cached(path: str) -> str:
    from cfnlint.decode import decode

    template, matches = decode(path)
    assert not matches, f"{path} does not parse: {matches}"
    return json.dumps(template, default=str)


def load(path: Path) -> dict:
    """The template as plain dicts (intrinsics as ``{"Fn::Sub": ...}``); a fresh copy on every call."""
    return json.loads(_load_cached(str(path)))


def listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def resolve(node: Any, values: dict[str, str] | None = None) -> str:
    """A string for ``node`` with ``${X}`` / Ref / GetAtt replaced from ``values`` (EXAMPLE, EXAMPLE_ATTS by
    default). Unknown references are left as ``${X}`` so a test can see them."""
    if values is None:
        values = {**_role_arns(), **EXAMPLE, **EXAMPLE_ATTS}
    else:
        values = {**EXAMPLE, **EXAMPLE_ATTS, **values}
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            return values.get(arg, f"${{{arg}}}")
        if key == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else arg
            return values.get(name, f"${{{name}}}")
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            local = {**values, **{k: resolve(v, values) for k, v in extra.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: local.get(m.group(1), m.group(0)), text)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(resolve(i, values) for i in listify(items))
        if key == "Fn::ImportValue":
            return "import:" + resolve(arg, values)
    return json.dumps(node)


def iam_statements(template: dict, role: str) -> Iterator[dict]:
    """Every statement that applies to role ``role``: its inline policies and the AWS::IAM::Policy /
    ManagedPolicy / RolePolicy resources that name it."""
    resources = template["Resources"]
    for policy in resources[role]["Properties"].get("Policies", []):
        yield from listify(policy["PolicyDocument"]["Statement"])
    for res in resources.values():
        if res["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            continue
        props = res["Properties"]
        names = [props.get("RoleName")] if "RoleName" in props else props.get("Roles", [])
        refs = []
        for name in names:
            if isinstance(name, dict) and "Fn::If" in name:
                refs += [branch for branch in name["Fn::If"][1:] if isinstance(branch, dict)]
            else:
                refs.append(name)
        if {"Ref": role} in refs:
            yield from listify(props["PolicyDocument"]["Statement"])


def statement_actions(statement: dict) -> list[str]:
    return listify(statement.get("Action", []))


def statement_resources(statement: dict) -> list[str]:
    return [resolve(r) for r in listify(statement.get("Resource", []))]


def params(env: str) -> dict[str, str]:
    """The app template's parameter values for ``env``: its params file over the template's defaults."""
    declared = load(APP)["Parameters"]
    values = {k: str(v["Default"]) for k, v in declared.items() if "Default" in v}
    values.update(json.loads((PARAMS / f"{env}.json").read_text())["Parameters"])
    return values


def container(template: dict | None = None) -> dict:
    template = template or load(APP)
    (only,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return only


def task_environment(env: str) -> dict[str, str]:
    """The container's environment variables as ECS gives them to the task in ``env`` (Refs to parameters
    resolved with that environment's values; conditional entries included when their value is set)."""
    values = params(env)
    out: dict[str, str] = {}
    for entry in container()["Environment"]:
        if isinstance(entry, dict) and "Fn::If" in entry:
            entry = entry["Fn::If"][1]
            if "Name" not in entry or not values.get(entry["Value"].get("Ref", ""), ""):
                continue
        value = entry["Value"]
        if isinstance(value, dict) and "Ref" in value:
            value = values.get(value["Ref"], f"${{{value['Ref']}}}")
        elif not isinstance(value, str):
            value = resolve(value, values)
        out[entry["Name"]] = str(value)
    return out
