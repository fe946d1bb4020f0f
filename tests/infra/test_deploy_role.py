"""The CloudFormation deploy role (1-setup ``CloudFormationRole``) can create, read, update and delete every
resource of the stacks it deploys, and grants nothing else.

Neither cfn-lint nor checkov can see this: a missing ``cloudwatch:ListTagsForResource`` only shows up as a
failed first deployment. The permissions each resource type's CloudFormation handlers call are declared in
the resource provider schemas (``handlers: {create, read, update, delete: {permissions}}``); cfn-lint ships
those schemas, and its IAM reference (``Policies.json``, the data behind its W3037 rule) says which actions
exist and which resources each can be scoped to. Role actions are matched with IAM's wildcard semantics
(case-insensitive ``*`` / ``?``, i.e. fnmatch).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest

from tests.infra.cfn import APP, PIPELINE, SETUP, iam_statements, load, statement_actions, statement_resources

HANDLERS = ("create", "read", "update", "delete")
DEPLOY_ROLE = "CloudFormationRole"
DEPLOY_ROLE_IMPORT = "${ServiceName}:CloudFormationRoleArn"


@lru_cache(maxsize=None)
def _iam_reference() -> dict:
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


def is_iam_action(action: str) -> bool:
    service, _, name = action.partition(":")
    return name.lower() in _iam_reference().get(service.lower(), {}).get("Actions", {})


def expand(pattern: str) -> list[str]:
    """Every IAM action ``pattern`` (which may hold wildcards) stands for, per cfn-lint's IAM reference."""
    service, _, name = pattern.partition(":")
    actions = _iam_reference().get(service.lower(), {}).get("Actions", {})
    return [f"{service.lower()}:{a}" for a in actions if fnmatch.fnmatchcase(a, name.lower())]


@lru_cache(maxsize=None)
def handler_permissions(resource_type: str) -> dict[str, tuple[str, ...]]:
    """``{handler: permissions}`` of ``resource_type`` from the us-east-1 provider schema cfn-lint uses."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    handlers = schema.get("handlers")
    assert handlers, f"the {resource_type} schema declares no handlers: its permissions cannot be checked"
    return {h: tuple(handlers.get(h, {}).get("permissions", [])) for h in HANDLERS}


# ---- which stacks the deploy role deploys ---------------------------------------------------------

def deployed_templates() -> list[Path]:
    """Templates of the pipeline's CloudFormation actions. Every such action must run as the deploy role
    (the pipeline role itself has no rights on the stacks' resources)."""
    stages = load(PIPELINE)["Resources"]["Pipeline"]["Properties"]["Stages"]
    paths = set()
    for stage in stages:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] != "CloudFormation":
                continue
            config = action["Configuration"]
            mode = config["ActionMode"]
            if mode == "CHANGE_SET_EXECUTE":  # runs with the role the change set was created with
                continue
            assert config["RoleArn"] == {"Fn::ImportValue": {"Fn::Sub": DEPLOY_ROLE_IMPORT}}, (
                f"{stage['Name']}/{action['Name']} does not deploy with the CloudFormation deploy role")
            artifact, _, path = config["TemplatePath"].partition("::")
            assert artifact == "Source", config["TemplatePath"]
            paths.add(path)
    return sorted(PIPELINE.parents[2] / p for p in paths)


def test_the_deploy_role_deploys_exactly_the_app_stacks() -> None:
    """The setup and pipeline stacks are deployed by a person (cicd/README.md), so only the app template's
    resource types are in scope; if the pipeline ever deploys another template, it joins the check."""
    assert deployed_templates() == [APP]
    setup = load(SETUP)["Resources"]
    assert setup[DEPLOY_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "cloudformation.amazonaws.com"}


def _resources(resource_type: str) -> list[dict]:
    found = []
    for path in deployed_templates():
        for res in load(path)["Resources"].values():
            if res["Type"] == resource_type:
                found.append(res.get("Properties", {}))
    return found


def _types() -> list[str]:
    return sorted({res["Type"] for path in deployed_templates() for res in load(path)["Resources"].values()})


# ---- what the role grants -------------------------------------------------------------------------

def _allows() -> list[dict]:
    statements = list(iam_statements(load(SETUP), DEPLOY_ROLE))
    assert not [s for s in statements if s.get("Effect") != "Allow"], "the deploy role has no Deny statements"
    assert not [s for s in statements if "NotAction" in s or "NotResource" in s]
    return statements


def granted(action: str) -> bool:
    """True when some Allow statement of the deploy role names an action pattern matching ``action``."""
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower())
               for s in _allows() for pattern in statement_actions(s))


# ---- handler permissions the templates can never make CloudFormation call ---------------------------
# Each entry: (resource type, permission) -> (why the stacks never need it, a check on the template's
# resources of that type that keeps the reason true). The schemas list the union over every optional
# feature of a type; granting e.g. the Amplify or Cognito sides of a WAF association "just in case" would
# let the pipeline's deploy role act on services this project does not use.

def _elb_only_association(props: list[dict]) -> bool:
    albs = {name for path in deployed_templates() for name, r in load(path)["Resources"].items()
            if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"}
    return all(p["ResourceArn"] in [{"Ref": a} for a in albs] for p in props)


def _no_private_ca(props: list[dict]) -> bool:
    return all("CertificateAuthorityArn" not in p for p in props)


def _ecs_only_scaling(props: list[dict]) -> bool:
    return all(p["ServiceNamespace"] == "ecs" for p in props)


def _no_firehose_or_s3_log_delivery(props: list[dict]) -> bool:
    return all(not p.get("LogDeliveryConfigurations") and "SnapshotArns" not in p for p in props)


def _log_groups_without_firehose(props: list[dict]) -> bool:
    return not any(t.startswith(("AWS::KinesisFirehose::", "AWS::Logs::Delivery")) for t in _types())


def _waf_logs_to_cloudwatch_only(props: list[dict]) -> bool:
    groups = {name for path in deployed_templates() for name, r in load(path)["Resources"].items()
              if r["Type"] == "AWS::Logs::LogGroup"}
    return all(dest in [{"Fn::GetAtt": [g, "Arn"]} for g in groups]
               for p in props for dest in p["LogDestinationConfigs"])


def _no_cognito_listener_actions(props: list[dict]) -> bool:
    return all(a.get("Type") != "authenticate-cognito" for p in props for a in p.get("DefaultActions", []))


def _no_rule_groups(props: list[dict]) -> bool:
    return "AWS::WAFv2::RuleGroup" not in _types()


_WAF_OTHER_SERVICES = [
    "amplify:AssociateWebACL", "amplify:DisassociateWebACL", "amplify:GetWebACLForResource",
    "apigateway:SetWebACL", "apprunner:AssociateWebAcl", "apprunner:DescribeWebAclForService",
    "apprunner:DisassociateWebAcl", "appsync:AssociateWebACL", "appsync:DisassociateWebACL",
    "appsync:GetWebACLForResource", "appsync:SetWebACL", "bedrock-agentcore:GatewayAssociateWebACL",
    "bedrock-agentcore:GatewayDisassociateWebACL", "bedrock-agentcore:GatewayGetWebACLForResource",
    "cognito-idp:AssociateWebACL", "cognito-idp:DisassociateWebACL", "cognito-idp:GetWebACLForResource",
    "ec2:AssociateVerifiedAccessInstanceWebAcl", "ec2:DescribeVerifiedAccessInstanceWebAclAssociations",
    "ec2:DisassociateVerifiedAccessInstanceWebAcl", "ec2:GetVerifiedAccessInstanceWebAcl",
]
NOT_NEEDED: dict[tuple[str, str], tuple[str, Callable[[list[dict]], bool]]] = {
    **{("AWS::WAFv2::WebACLAssociation", p): (
        "the web ACL is associated with this stack's ALB only; WAF checks the associated service's own "
        "permission (elasticloadbalancing:SetWebACL), never Amplify's, App Runner's, AppSync's, Cognito's, "
        "API Gateway's or Verified Access's", _elb_only_association) for p in _WAF_OTHER_SERVICES},
    ("AWS::WAFv2::WebACLAssociation", "wafv2:PutPermissionPolicy"): (
        "shares a WAF rule group with other accounts; the stacks declare no rule group", _no_rule_groups),
    ("AWS::CertificateManager::Certificate", "acm-pca:GetCertificate"): (
        "only for certificates issued by a private CA (CertificateAuthorityArn); ours is a public, "
        "DNS-validated certificate", _no_private_ca),
    ("AWS::CertificateManager::Certificate", "acm-pca:IssueCertificate"): (
        "only for certificates issued by a private CA", _no_private_ca),
    **{("AWS::ApplicationAutoScaling::ScalableTarget", p): (
        "Lambda provisioned concurrency is scaled only when ServiceNamespace is lambda; ours is ecs",
        _ecs_only_scaling) for p in ("lambda:DeleteProvisionedConcurrencyConfig",
                                      "lambda:GetProvisionedConcurrencyConfig",
                                      "lambda:PutProvisionedConcurrencyConfig")},
    **{("AWS::ElastiCache::ReplicationGroup", p): (
        "only for LogDeliveryConfigurations to Kinesis Data Firehose; the replication group delivers no logs",
        _no_firehose_or_s3_log_delivery) for p in ("firehose:PutRecord", "firehose:PutRecordBatch",
                                                    "firehose:TagDeliveryStream")},
    ("AWS::Logs::LogGroup", "firehose:TagDeliveryStream"): (
        "tags a Firehose delivery stream; no log group of the stacks delivers to Firehose",
        _log_groups_without_firehose),
    ("AWS::WAFv2::LoggingConfiguration", "firehose:ListDeliveryStreams"): (
        "WAF logs go to a CloudWatch Logs group of the same stack, not to Firehose", _waf_logs_to_cloudwatch_only),
    ("AWS::WAFv2::LoggingConfiguration", "s3:GetBucketPolicy"): (
        "WAF logs go to a CloudWatch Logs group, not to an S3 bucket", _waf_logs_to_cloudwatch_only),
    ("AWS::WAFv2::LoggingConfiguration", "s3:PutBucketPolicy"): (
        "WAF logs go to a CloudWatch Logs group, not to an S3 bucket", _waf_logs_to_cloudwatch_only),
    ("AWS::ElasticLoadBalancingV2::Listener", "cognito-idp:DescribeUserPoolClient"): (
        "only for authenticate-cognito listener actions; the listeners forward and redirect",
        _no_cognito_listener_actions),
}


def _needed(resource_type: str) -> dict[str, list[str]]:
    """``{permission: [handlers]}`` that the deploy role must grant for ``resource_type``."""
    needed: dict[str, list[str]] = {}
    for handler, permissions in handler_permissions(resource_type).items():
        for permission in permissions:
            if (resource_type, permission) in NOT_NEEDED or not is_iam_action(permission):
                continue  # not an IAM action at all (e.g. "s3:REST.PUT.OBJECT"): nothing can grant it
            needed.setdefault(permission, []).append(handler)
    return needed


@pytest.mark.parametrize("resource_type", _types())
def test_deploy_role_grants_every_handler_permission(resource_type: str) -> None:
    missing = {p: h for p, h in _needed(resource_type).items() if not granted(p)}
    assert not missing, f"{DEPLOY_ROLE} lacks, for {resource_type}: " + ", ".join(
        f"{p} ({'/'.join(h)})" for p, h in sorted(missing.items()))


def test_permissions_left_out_are_still_not_needed() -> None:
    """Each exemption names a permission the schema still lists, its reason still holds for the template,
    and the role does not grant it anyway (then the exemption would be stale)."""
    types = set(_types())
    for (resource_type, permission), (reason, holds) in NOT_NEEDED.items():
        if resource_type not in types:
            continue
        listed = {p for ps in handler_permissions(resource_type).values() for p in ps}
        assert permission in listed, f"{resource_type} no longer lists {permission}: drop the exemption"
        assert holds(_resources(resource_type)), f"{resource_type}/{permission}: no longer true that {reason}"
        assert not granted(permission), f"{permission} is granted although exempted for {resource_type}"


def test_handler_permissions_that_are_not_iam_actions_are_few() -> None:
    """A schema permission cfn-lint's IAM reference does not know is skipped; keep that list short and
    known, so a new real action is not skipped because the reference is older than the schema."""
    unknown = sorted({p for t in _types() for ps in handler_permissions(t).values() for p in ps
                      if not is_iam_action(p)})
    assert unknown == ["iam:DescribeOrganization", "payments:GetConnectedAccount", "s3:REST.PUT.OBJECT"]


# Actions the deploy role needs that are not handler permissions.
NOT_FROM_HANDLERS = {
    "ec2:DescribeSubnets": "validates List<AWS::EC2::Subnet::Id> parameters (PublicSubnetIds, PrivateSubnetIds)",
    "s3:GetObjectVersion": "reads the template and its configuration from the versioned artifact bucket",
}


def test_deploy_role_grants_nothing_the_stacks_do_not_need() -> None:
    """Least privilege in the other direction: every action the role names is a handler permission of a
    deployed resource type (or one of NOT_FROM_HANDLERS), and no action is a wildcard."""
    needed = {p.lower() for t in _types() for p in _needed(t)} | {p.lower() for p in NOT_FROM_HANDLERS}
    extra = []
    for statement in _allows():
        for action in statement_actions(statement):
            assert "*" not in action and "?" not in action, f"{DEPLOY_ROLE} grants the wildcard {action}"
            if action.lower() not in needed:
                extra.append(action)
    assert not extra, f"{DEPLOY_ROLE} grants actions no deployed resource needs: {sorted(extra)}"


def test_dynamic_references_and_parameter_types_are_covered() -> None:
    """CloudFormation itself resolves {{resolve:secretsmanager:...}} and validates AWS-specific parameter
    types with the role's credentials."""
    text = APP.read_text()
    if "{{resolve:secretsmanager:" in text:
        assert granted("secretsmanager:GetSecretValue") and granted("kms:Decrypt")
    kinds = {p["Type"] for p in load(APP)["Parameters"].values()}
    wanted = {"AWS::EC2::VPC::Id": "ec2:DescribeVpcs", "List<AWS::EC2::Subnet::Id>": "ec2:DescribeSubnets",
              "AWS::Route53::HostedZone::Id": "route53:GetHostedZone"}
    for kind in kinds:
        if kind.startswith(("AWS::", "List<AWS::")):
            assert kind in wanted, f"parameter type {kind}: add the Describe action it needs here"
            assert granted(wanted[kind]), wanted[kind]


# ---- every scoped statement of every role in the setup stack can actually be scoped that way ---------

def _arn_patterns(action: str) -> list[re.Pattern[str]]:
    service, _, name = action.partition(":")
    ref = _iam_reference().get(service.lower(), {})
    types = ref.get("Actions", {}).get(name.lower(), {}).get("Resources", [])
    formats = {k.lower(): v.get("ARNFormats", []) for k, v in ref.get("Resources", {}).items()}
    patterns = []
    for kind in types:
        for fmt in formats.get(kind.lower(), []):
            if service.lower() in ("codestar-connections", "codeconnections"):
                # One service under two prefixes: either prefix's actions take either prefix's ARNs.
                fmt = fmt.replace(f":{service.lower()}:", ":(codestar-connections|codeconnections):")
            regex = re.escape(fmt).replace(r"\.\*", ".*").replace(
                r"\(codestar\-connections\|codeconnections\)", "(codestar-connections|codeconnections)")
            regex = re.sub(r"\\\$\\\{[^}]*\\\}", "[^:]*", regex)
            patterns.append(re.compile(regex + "$"))
    return patterns


def _example(arn: str) -> str:
    """A concrete ARN an IAM wildcard ARN matches (``*`` → ``x1``, ``?`` → ``x``)."""
    return arn.replace("*", "x1").replace("?", "x")


def _roles_and_policies() -> list[str]:
    resources = load(SETUP)["Resources"]
    return sorted(n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role")


@pytest.mark.parametrize("role", _roles_and_policies())
def test_scoped_actions_support_the_resources_they_are_scoped_to(role: str) -> None:
    """IAM denies an action whose Resource names an ARN type the action does not take (e.g.
    RegisterTaskDefinition on a task-definition ARN): a deploy that fails with AccessDenied although the
    action is "granted". Every action in a statement with specific resources must be a known IAM action
    that can apply to at least one of those resources."""
    problems = []
    for statement in iam_statements(load(SETUP), role):
        if statement.get("Effect") != "Allow":
            continue
        resources = statement_resources(statement)
        if resources == ["*"]:
            for action in statement_actions(statement):
                assert expand(action), f"{role}: {action} is not an IAM action"
            continue
        for pattern in statement_actions(statement):
            actions = expand(pattern)
            if not actions:
                problems.append(f"{pattern}: not an IAM action (cfn-lint's IAM reference)")
            for action in actions:
                arns = _arn_patterns(action)
                if not any(p.match(_example(r)) for p in arns for r in resources):
                    problems.append(f"{action} on {resources}: it takes only "
                                    f"{[p.pattern for p in arns] or ['*']}")
    assert not problems, f"{role}:\n  " + "\n  ".join(problems)


def test_the_deploy_role_is_not_an_administrator() -> None:
    """The pipeline's deploy role cannot widen its own or anyone's permissions: IAM writes are limited to
    service-linked roles, and it hands only this service's ECS roles to ECS tasks."""
    for statement in _allows():
        for action in statement_actions(statement):
            if action.lower().startswith("iam:"):
                assert action in ("iam:CreateServiceLinkedRole", "iam:PutRolePolicy", "iam:PassRole",
                                  "iam:GetRole"), f"{DEPLOY_ROLE} may change IAM: {action}"
        if "iam:PutRolePolicy" in statement_actions(statement):
            assert all("aws-service-role/elasticache.amazonaws.com/" in r for r in statement_resources(statement))
        if "iam:PassRole" in statement_actions(statement):
            assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
            assert all(r.endswith("-task*") for r in statement_resources(statement))
