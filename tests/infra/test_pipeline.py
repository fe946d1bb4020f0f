"""The pipeline cannot be hijacked from a pull request, deploys only what it built and tested, checks
secrets before deploying, and puts a person and a change set between the test stack and production."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra import CICD, ROOT
from tests.infra.cfn import (PARAMS, PIPELINE, SETUP, iam_statements, load, resolve, statement_actions,
                             statement_resources)

SCRIPTS = CICD / "2-cicd"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _pipeline() -> dict:
    return load(PIPELINE)["Resources"]


def _actions() -> list[tuple[int, str, dict]]:
    """(stage index, stage name, action) in pipeline order."""
    out = []
    for i, stage in enumerate(_pipeline()["Pipeline"]["Properties"]["Stages"]):
        for action in stage["Actions"]:
            out.append((i, stage["Name"], action))
    return out


def _setup_role_actions(role: str) -> list[str]:
    return [a for s in iam_statements(load(SETUP), role) if s.get("Effect") == "Allow" for a in statement_actions(s)]


# ---- pull requests --------------------------------------------------------------------------------

def test_pull_requests_build_with_their_own_powerless_role() -> None:
    project = _pipeline()["PullRequestProject"]["Properties"]
    assert project["ServiceRole"] == {"Fn::ImportValue": {"Fn::Sub": "${ServiceName}:PullRequestRoleArn"}}
    actions = [a.lower() for a in _setup_role_actions("PullRequestRole")]
    forbidden = ("ecr:", "s3:", "secretsmanager:", "kms:", "codepipeline:", "iam:", "sts:", "cloudformation:",
                 "codebuild:startbuild", "ssm:")
    assert not [a for a in actions if a.startswith(forbidden)], actions
    assert set(actions) <= {"logs:createlogstream", "logs:putlogevents", "codestar-connections:useconnection",
                            "codestar-connections:getconnectiontoken", "codestar-connections:getconnection",
                            "codeconnections:useconnection", "codeconnections:getconnectiontoken",
                            "codeconnections:getconnection"}
    for statement in iam_statements(load(SETUP), "PullRequestRole"):
        if any(a.startswith("logs:") for a in statement_actions(statement)):
            assert statement_resources(statement) == [
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/codebuild/aiproxy-pull-request:*"]


def test_only_the_pipeline_build_project_uses_the_role_that_can_push() -> None:
    users = [name for name, res in _pipeline().items() if res["Type"] == "AWS::CodeBuild::Project"
             and res["Properties"]["ServiceRole"] == {"Fn::ImportValue": {"Fn::Sub": "${ServiceName}:CodeBuildRoleArn"}}]
    assert users == ["BuildProject"]
    assert _pipeline()["BuildProject"]["Properties"]["Source"]["Type"] == "CODEPIPELINE"
    # No other role in the setup stack may push images.
    pushers = [r for r, res in load(SETUP)["Resources"].items() if res["Type"] == "AWS::IAM::Role"
               and any(a.lower() in ("ecr:putimage", "ecr:*", "*") for a in _setup_role_actions(r))]
    assert pushers == ["CodeBuildRole"]


def test_the_repository_refuses_pushes_from_anyone_but_the_pipeline_build() -> None:
    setup = load(SETUP)["Resources"]
    repo = setup["Repository"]["Properties"]
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    (deny,) = repo["RepositoryPolicyText"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"} <= set(
        deny["Action"])
    allowed = resolve(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    assert allowed == "arn:aws:iam::123456789012:role/" + resolve(setup["CodeBuildRole"]["Properties"]["RoleName"])
    # build-image.sh looks for this statement before it accepts an existing tag.
    assert f'policy_statement="{deny["Sid"]}"' in (SCRIPTS / "build-image.sh").read_text()


def _webhook_pattern(ids: str) -> re.Pattern[str]:
    (group,) = _pipeline()["PullRequestProject"]["Properties"]["Triggers"]["FilterGroups"]
    (actor,) = [f for f in group if f["Type"] == "ACTOR_ACCOUNT_ID"]
    text, variables = actor["Pattern"]["Fn::Sub"]
    join = variables["Ids"]["Fn::Join"]
    assert join[1] == {"Fn::Split": [",", {"Ref": "PullRequestAuthorIds"}]}
    return re.compile(text.replace("${Ids}", join[0].join(ids.split(","))))


def test_only_trusted_authors_start_pull_request_builds() -> None:
    project = _pipeline()["PullRequestProject"]["Properties"]
    (group,) = project["Triggers"]["FilterGroups"]
    kinds = {f["Type"]: f for f in group}
    assert set(kinds) == {"EVENT", "BASE_REF", "ACTOR_ACCOUNT_ID"}  # one group: all must match
    assert all(not f.get("ExcludeMatchedPattern") for f in group)
    assert {e.strip() for e in kinds["EVENT"]["Pattern"].split(",")} <= {
        "PULL_REQUEST_CREATED", "PULL_REQUEST_UPDATED", "PULL_REQUEST_REOPENED"}
    pattern = _webhook_pattern("1234,98765")
    assert pattern.search("1234") and pattern.search("98765")
    assert not pattern.search("12345") and not pattern.search("123") and not pattern.search("41234")
    param = load(PIPELINE)["Parameters"]["PullRequestAuthorIds"]
    assert "Default" not in param, "whoever deploys the pipeline must decide who is trusted"
    assert re.fullmatch(param["AllowedPattern"], "1234,98765") and not re.fullmatch(param["AllowedPattern"], "*")


def _commands(buildspec: Path) -> list[str]:
    spec = yaml.safe_load(buildspec.read_text())
    return [c for phase in ("install", "pre_build", "build", "post_build")
            for c in spec["phases"].get(phase, {}).get("commands", [])]


def test_pull_requests_build_the_image_and_run_the_suite_in_it_without_pushing() -> None:
    commands = _commands(SCRIPTS / "buildspec-pr.yml")
    joined = "\n".join(commands)
    assert "build-image.sh build" in joined and "bin/test.sh" in joined
    assert "push" not in joined and "IMAGE_REPOSITORY_URI=" not in joined
    assert _pipeline()["PullRequestProject"]["Properties"]["Environment"]["PrivilegedMode"] is True


def test_the_pipeline_build_tests_inside_the_image_before_it_pushes() -> None:
    commands = _commands(SCRIPTS / "buildspec.yml")
    order = [next(i for i, c in enumerate(commands) if marker in c)
             for marker in ("lint.sh", "build-image.sh build", "bin/test.sh", "build-image.sh push")]
    assert order == sorted(order), commands
    assert "IMAGE_TAG" in yaml.safe_load((SCRIPTS / "buildspec.yml").read_text())["env"]["exported-variables"]
    test_sh = (ROOT / "bin" / "test.sh").read_text()
    assert "--target test" in test_sh and "docker run" in test_sh, "bin/test.sh no longer runs the suite in the image"


# ---- build-image.sh, with fake docker and aws on PATH ------------------------------------------------

@pytest.fixture()
def fake_tools(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    (bin_dir / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_aws.py"}" "$@"\n')
    (bin_dir / "docker").write_text(
        '#!/bin/sh\necho "docker $*" >> "$FAKE_AWS_LOG"\n'
        'if [ "$1 $2" = "image inspect" ] && [ -n "$FAKE_DOCKER_NO_IMAGE" ]; then exit 1; fi\n'
        'if [ "$1" = login ]; then cat >/dev/null; fi\n')
    for tool in ("aws", "docker"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AWS_LOG": str(log), "AWS_REGION": "us-east-1",
            "IMAGE_TAG": SHA, "IMAGE_REPOSITORY_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/aiproxy",
            "IMAGE_REPOSITORY_NAME": "aiproxy"}


def _build_image(step: str, env: dict[str, str], **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "IMAGE_"))}
    full.update(env, **extra)
    proc = subprocess.run(["bash", str(SCRIPTS / "build-image.sh"), step], capture_output=True, text=True,
                          env=full, timeout=60)
    log = Path(env["FAKE_AWS_LOG"])
    return proc, log.read_text().splitlines() if log.exists() else []


POLICY = json.dumps({"Statement": [{"Sid": "OnlyThePipelineBuildPushes", "Effect": "Deny"}]})


def test_build_always_builds_even_when_the_tag_is_already_in_ecr(fake_tools: dict[str, str]) -> None:
    proc, calls = _build_image("build", fake_tools, FAKE_ECR_IMAGE_DIGEST="sha256:planted", FAKE_ECR_POLICY=POLICY)
    assert proc.returncode == 0, proc.stderr
    assert any(c.startswith("docker build --target runtime") and c.endswith(f"aiproxy:{SHA} .") for c in calls)
    assert not [c for c in calls if c.startswith("aws ")], "the build step must not consult ECR"


def test_push_pushes_a_new_tag(fake_tools: dict[str, str]) -> None:
    proc, calls = _build_image("push", fake_tools)
    assert proc.returncode == 0, proc.stderr
    assert f"docker push {fake_tools['IMAGE_REPOSITORY_URI']}:{SHA}" in calls


def test_push_keeps_an_existing_tag_only_when_only_the_pipeline_can_push(fake_tools: dict[str, str]) -> None:
    proc, calls = _build_image("push", fake_tools, FAKE_ECR_IMAGE_DIGEST="sha256:earlier", FAKE_ECR_POLICY=POLICY)
    assert proc.returncode == 0, proc.stderr
    assert "sha256:earlier" in proc.stdout and not [c for c in calls if c.startswith("docker push")]
    proc, calls = _build_image("push", fake_tools, FAKE_ECR_IMAGE_DIGEST="sha256:planted")
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert not [c for c in calls if c.startswith("docker push")]


def test_push_refuses_an_image_this_run_did_not_build(fake_tools: dict[str, str]) -> None:
    proc, calls = _build_image("push", fake_tools, FAKE_DOCKER_NO_IMAGE="1")
    assert proc.returncode != 0 and not [c for c in calls if c.startswith(("docker push", "aws "))]


@pytest.mark.parametrize("tag", ["latest", "0123456", SHA.upper(), SHA + "0", "set-by-the-pipeline"])
def test_only_full_commit_ids_are_tags(fake_tools: dict[str, str], tag: str) -> None:
    proc, calls = _build_image("build", fake_tools, IMAGE_TAG=tag)
    assert proc.returncode == 2 and not calls


# ---- secrets checked before each deployment -----------------------------------------------------------

def test_test_and_production_keep_the_same_secrets() -> None:
    names = {env: json.loads((PARAMS / f"{env}.json").read_text())["Parameters"].get("AppSecretNames")
             for env in ("test", "production")}
    assert names["test"] and names["test"] == names["production"], names
    from lib.secrets import SECRET_ENV_NAMES

    assert set(names["production"].split(",")) <= {n.lower() for n in SECRET_ENV_NAMES}
    assert "aiproxy_master_key" in names["production"].split(",")


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    from tests.infra.test_health import _free_port

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _check_secrets(params_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    aws = shutil.which("aws")
    path = os.environ["PATH"]
    if aws is None:  # the real AWS CLI when installed; else tests/infra/fake_aws.py (real calls via botocore)
        shim = params_file.parent / "bin"
        shim.mkdir(exist_ok=True)
        (shim / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_aws.py"}" "$@"\n')
        (shim / "aws").chmod(0o755)
        path = f"{shim}:{path}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full.update({"PATH": path, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", **env})
    return subprocess.run(["bash", str(SCRIPTS / "check-secrets.sh"), str(params_file)], capture_output=True,
                          text=True, env=full, timeout=120)


def _params_copy(tmp_path: Path, env: str, dns: str) -> Path:
    data = json.loads((PARAMS / f"{env}.json").read_text())
    data["Parameters"]["DnsRecord"] = dns  # a name of this test's own, so runs never share secrets
    out = tmp_path / f"{env}.json"
    out.write_text(json.dumps(data))
    return out


def test_check_secrets_against_secrets_manager(moto_endpoint: str, tmp_path: Path) -> None:
    """Production's params file (test's lists the same names: see above), against moto in server mode."""
    import boto3

    env = "production"

    dns = f"{env}-{os.getpid()}-{tmp_path.name}.example.com".lower()
    params_file = _params_copy(tmp_path, env, dns)
    names = json.loads(params_file.read_text())["Parameters"]["AppSecretNames"].split(",")
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    aws_env = {"AWS_ENDPOINT_URL": moto_endpoint}

    # Nothing there yet: every required name fails, the optional one only warns.
    proc = _check_secrets(params_file, aws_env)
    assert proc.returncode == 1
    for name in names:
        line = f"{env}/{dns}/{name} does not exist"
        if name == "honeybadger_api_key":
            assert "warning: optional secret " + line in proc.stderr
        else:
            assert "FAIL required secret " + line in proc.stderr
    # All required ones created (Honeybadger left out): passes, with a warning.
    for name in names:
        if name != "honeybadger_api_key":
            client.create_secret(Name=f"{env}/{dns}/{name}", SecretString="value-" + name)
    proc = _check_secrets(params_file, aws_env)
    assert proc.returncode == 0, proc.stderr
    assert "check-secrets: PASS" in proc.stdout and "honeybadger_api_key does not exist" in proc.stderr
    assert "value-" not in proc.stdout + proc.stderr, "the check must never print a secret value"
    # A required secret scheduled for deletion counts as missing.
    client.delete_secret(SecretId=f"{env}/{dns}/aiproxy_master_key", RecoveryWindowInDays=7)
    proc = _check_secrets(params_file, aws_env)
    assert proc.returncode == 1 and "aiproxy_master_key is scheduled for deletion" in proc.stderr
    # Any other error (here: Secrets Manager unreachable) fails the check for every name.
    proc = _check_secrets(params_file, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"})
    assert proc.returncode == 1 and proc.stderr.count("check-secrets: FAIL ") == len(names)


def test_the_secrets_check_role_reads_metadata_only() -> None:
    actions = {a for a in _setup_role_actions("SecretsCheckRole") if a.startswith("secretsmanager:")}
    assert actions == {"secretsmanager:DescribeSecret"}
    (statement,) = [s for s in iam_statements(load(SETUP), "SecretsCheckRole")
                    if "secretsmanager:DescribeSecret" in statement_actions(s)]
    assert statement_resources(statement) == [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:production/ai.example.com/*",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:test/ai-test.example.com/*"]
    project = _pipeline()["CheckSecretsProject"]["Properties"]
    assert project["ServiceRole"] == {"Fn::ImportValue": {"Fn::Sub": "${ServiceName}:SecretsCheckRoleArn"}}
    assert "cicd/2-cicd/check-secrets.sh" in project["Source"]["BuildSpec"]


# ---- the road to production ----------------------------------------------------------------------------

def _find(name: str) -> tuple[int, dict]:
    (found,) = [(i, a) for i, _, a in _actions() if a["Name"] == name]
    return found


def test_secrets_are_checked_before_each_deployment() -> None:
    for check, deploy, env in (("CheckTestSecrets", "TestStack", "test"),
                               ("CheckProductionSecrets", "ProductionChangeSet", "production")):
        (ci, c), (di, d) = _find(check), _find(deploy)
        assert ci == di and c.get("RunOrder", 1) < d.get("RunOrder", 1), (check, deploy)
        assert json.loads(c["Configuration"]["EnvironmentVariables"]) == [
            {"name": "TARGET_ENVIRONMENT", "value": env, "type": "PLAINTEXT"}]
        assert c["Configuration"]["ProjectName"] == {"Ref": "CheckSecretsProject"}
        assert d["Configuration"]["TemplateConfiguration"] == f"Source::cicd/3-app/aiproxy/params/{env}.json"


def test_production_is_a_reviewed_change_set() -> None:
    stages = [name for name in dict.fromkeys(s for _, s, _ in _actions())]
    assert stages == ["Source", "Build", "DeployTest", "SmokeTest", "PrepareProduction", "ApproveProduction",
                      "DeployProduction"]
    (si, _), (ci, create) = _find("HealthAndSandboxChat"), _find("ProductionChangeSet")
    (ai, approve), (ei, execute) = _find("ReviewTheChangeSet"), _find("ExecuteTheChangeSet")
    assert si < ci < ai < ei
    assert create["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE"
    assert approve["ActionTypeId"] == {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"}
    assert approve["Configuration"]["NotificationArn"] == {"Ref": "PipelineTopic"}
    assert execute["Configuration"]["ActionMode"] == "CHANGE_SET_EXECUTE"
    for key in ("StackName", "ChangeSetName"):
        assert create["Configuration"][key] == execute["Configuration"][key]
    # Nothing else touches the production stack.
    production = [a for _, _, a in _actions() if a["ActionTypeId"]["Provider"] == "CloudFormation"
                  and "production" in json.dumps(a["Configuration"]["StackName"])]
    assert [a["Name"] for a in production] == ["ProductionChangeSet", "ExecuteTheChangeSet"]
    # The pipeline role may publish the approval request.
    pipeline_role = {a for a in _setup_role_actions("CodePipelineRole")}
    assert "sns:Publish" in pipeline_role and "cloudformation:ExecuteChangeSet" in pipeline_role


def test_failures_and_pending_approvals_are_notified() -> None:
    res = _pipeline()
    rule = res["PipelineNotifications"]["Properties"]
    assert rule["Targets"] == [{"TargetType": "SNS", "TargetAddress": {"Ref": "PipelineTopic"}}]
    assert {"codepipeline-pipeline-pipeline-execution-failed",
            "codepipeline-pipeline-manual-approval-needed"} <= set(rule["EventTypeIds"])
    assert "${Pipeline}" in rule["Resource"]["Fn::Sub"]
    (statement,) = res["PipelineTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "codestar-notifications.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    # The topic is encrypted with the service key: the key lets the notification service use it via SNS.
    key = load(SETUP)["Resources"]["Key"]["Properties"]["KeyPolicy"]["Statement"]
    (grant,) = [s for s in key if s.get("Principal") == {"Service": "codestar-notifications.amazonaws.com"}]
    assert "kms:GenerateDataKey*" in grant["Action"] and "sns." in json.dumps(grant["Condition"])
