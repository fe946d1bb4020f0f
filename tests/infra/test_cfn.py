"""The CloudFormation stacks under cicd/: cfn-lint and checkov clean, parameter files valid, stacks consistent
with each other and with the app (secret names, timeouts, paths the pipeline names)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest

from lib.secrets import SECRET_ENV_NAMES
from tests.infra import CICD, ROOT, checkov_bin, find_tool, missing

TEMPLATES = sorted(p for p in CICD.rglob("template.yml"))
APP_TEMPLATE = CICD / "3-app" / "aiproxy" / "template.yml"
PARAM_FILES = sorted((CICD / "3-app" / "aiproxy" / "params").glob("*.json"))
ENVIRONMENTS = ("development", "test", "production")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _load(path: Path) -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    assert not matches, f"{_rel(path)} does not parse: {matches}"
    return template


def _sub_strings(node: object, key: str) -> list[str]:
    """Every string under ``{key: {"Fn::Sub": s}}`` or ``{key: s}`` anywhere in ``node``."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                if isinstance(v, dict) and "Fn::Sub" in v and isinstance(v["Fn::Sub"], str):
                    found.append(v["Fn::Sub"])
                elif isinstance(v, str):
                    found.append(v)
            found += _sub_strings(v, key)
    elif isinstance(node, list):
        for item in node:
            found += _sub_strings(item, key)
    return found


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def test_the_three_stacks_are_there() -> None:
    names = {_rel(p) for p in TEMPLATES}
    assert {"cicd/1-setup/template.yml", "cicd/2-cicd/template.yml", "cicd/3-app/aiproxy/template.yml"} <= names
    assert {p.stem for p in PARAM_FILES} == set(ENVIRONMENTS)


# ---- cfn-lint -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cfn_lint() -> str:
    tool = find_tool("cfn-lint")
    if tool is None:
        missing("cfn-lint", "pip install -r requirements-dev.txt")
    return tool


@pytest.fixture(scope="module")
def cfn_lint_findings(cfn_lint: str) -> list[dict]:
    """cfn-lint over every template, in one process (errors and warnings; informational rules off)."""
    proc = subprocess.run([cfn_lint, "--format", "json", "--", *map(str, TEMPLATES)],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.stdout.strip(), f"cfn-lint printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("template", TEMPLATES, ids=_rel)
def test_cfn_lint_is_clean(cfn_lint_findings: list[dict], template: Path) -> None:
    mine = [f for f in cfn_lint_findings if Path(f["Filename"]).resolve() == template.resolve()]
    assert not mine, "\n".join(
        f"{f['Rule']['Id']} {f['Message']} ({_rel(template)}:{f['Location']['Start']['LineNumber']})" for f in mine)


def test_parameter_files_are_valid_for_the_app_template(cfn_lint: str, tmp_path: Path) -> None:
    """Each environment's parameters, checked by cfn-lint against the template (allowed values, required
    parameters, and every rule evaluated with those values). The files use the CodePipeline/`aws
    cloudformation deploy` format; cfn-lint wants CloudFormation's, with lists as arrays."""
    declared = _load(APP_TEMPLATE)["Parameters"]
    converted = []
    for path in PARAM_FILES:
        data = json.loads(path.read_text())
        assert set(data) <= {"Parameters", "Tags", "StackPolicy"}, path.name
        params = data["Parameters"]
        assert params["EnvironmentType"] == path.stem, f"{path.name} deploys {params['EnvironmentType']}"
        unknown = set(params) - set(declared)
        assert not unknown, f"{path.name} sets parameters the template does not have: {sorted(unknown)}"
        required = {name for name, spec in declared.items() if "Default" not in spec}
        assert required <= set(params), f"{path.name} misses {sorted(required - set(params))}"
        entries = []
        for key, value in params.items():
            assert isinstance(value, str), f"{path.name}: {key} must be a string, as CloudFormation takes it"
            kind = declared[key]["Type"]
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                value = value.split(",")
            entries.append({"ParameterKey": key, "ParameterValue": value})
        out = tmp_path / path.name
        out.write_text(json.dumps(entries))
        converted.append(str(out))
    proc = subprocess.run([cfn_lint, "--parameter-files", *converted, "--", str(APP_TEMPLATE)],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- checkov --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_results() -> dict:
    """checkov over cicd/ (CloudFormation), once, offline."""
    tool = checkov_bin()
    if tool is None:
        missing("checkov", "python3 -m venv .venv/checkov && .venv/checkov/bin/pip install -r "
                "cicd/requirements-checkov.txt")
    proc = subprocess.run([tool, "--skip-download", "--framework", "cloudformation", "-d", str(CICD),
                           "--output", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.strip().startswith("{"), f"checkov failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def test_checkov_has_no_failed_check(checkov_results: dict) -> None:
    failed = checkov_results["results"]["failed_checks"]
    assert not failed, "\n".join(
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in failed)
    assert checkov_results["summary"]["parsing_errors"] == 0


def test_checkov_scanned_every_template(checkov_results: dict) -> None:
    """A template checkov cannot read is silently absent from its results: make sure each one was checked."""
    scanned = {c["file_path"].lstrip("/") for c in checkov_results["results"]["passed_checks"]}
    assert scanned == {_rel(p).removeprefix("cicd/") for p in TEMPLATES}


def test_every_suppressed_checkov_finding_has_a_written_reason(checkov_results: dict) -> None:
    for check in checkov_results["results"]["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} is suppressed without a reason"


# ---- the stacks fit together ----------------------------------------------------------------------

def test_every_import_is_exported_by_the_setup_stack() -> None:
    setup = _load(CICD / "1-setup" / "template.yml")
    exports = {_expand(o["Export"]["Name"]["Fn::Sub"], {"ServiceName": "aiproxy"})
               for o in setup["Outputs"].values() if "Export" in o}
    for path in (CICD / "2-cicd" / "template.yml", APP_TEMPLATE):
        imports = _sub_strings(_load(path)["Resources"], "Fn::ImportValue")
        assert imports, _rel(path)
        for name in imports:
            for env in ENVIRONMENTS:
                wanted = _expand(name, {"ServiceName": "aiproxy", "EnvironmentType": env})
                assert wanted in exports, f"{_rel(path)} imports {wanted}, which stack 1 does not export"


def test_task_role_reads_exactly_the_secrets_the_app_loads() -> None:
    """IAM and lib/secrets.py agree on the names: <env>/<dns>/<lower-case variable name>."""
    setup = _load(CICD / "1-setup" / "template.yml")
    wanted = {name.lower() for name in SECRET_ENV_NAMES}
    for env in ENVIRONMENTS:
        role = setup["Resources"][f"{env.capitalize()}TaskRole"]
        (statement,) = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
                        if s["Action"] == "secretsmanager:GetSecretValue"]
        arns = [r["Fn::Sub"] for r in statement["Resource"]]
        names = set()
        for arn in arns:
            match = re.search(r":secret:([a-z]+)/\$\{(\w+)DnsRecord\}/([a-z_]+)-\?{6}$", arn)
            assert match, arn
            assert match.group(1) == env and match.group(2).lower() == env, arn
            names.add(match.group(3))
        assert names == wanted


def test_execution_roles_read_only_their_own_redis_url() -> None:
    setup = _load(CICD / "1-setup" / "template.yml")
    for env in ENVIRONMENTS:
        role = setup["Resources"][f"{env.capitalize()}TaskExecutionRole"]
        resources = [s["Resource"] for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
                     if "secretsmanager:GetSecretValue" in str(s["Action"])]
        assert [r["Fn::Sub"] for r in resources] == [
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            f"{env}/${{{env.capitalize()}DnsRecord}}/redis_url-??????"]


def test_app_secrets_follow_the_naming_the_loader_uses() -> None:
    app = _load(APP_TEMPLATE)["Resources"]
    for name in ("RedisAuthToken", "RedisUrl"):
        assert app[name]["Properties"]["Name"]["Fn::Sub"].startswith("${EnvironmentType}/${DnsRecord}/")
    container = app["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e.get("Value") for e in container["Environment"] if isinstance(e, dict) and "Name" in e}
    assert env["ENVIRONMENT_TYPE"] == {"Ref": "EnvironmentType"} and env["DNS_RECORD"] == {"Ref": "DnsRecord"}
    assert [s["Name"] for s in container["Secrets"]] == ["REDIS_URL"]


def test_security_groups_chain_internet_alb_tasks_redis() -> None:
    res = _load(APP_TEMPLATE)["Resources"]
    task_sg, redis_sg = res["TaskSecurityGroup"]["Properties"], res["RedisSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in task_sg and "SecurityGroupIngress" not in redis_sg
    ingress = {name: r["Properties"] for name, r in res.items() if r["Type"] == "AWS::EC2::SecurityGroupIngress"}
    assert {(i["GroupId"]["Ref"], i["SourceSecurityGroupId"]["Ref"], i["FromPort"]) for i in ingress.values()} == {
        ("TaskSecurityGroup", "AlbSecurityGroup", 8080), ("RedisSecurityGroup", "TaskSecurityGroup", 6379)}
    assert all("CidrIp" not in i for i in ingress.values())


def test_log_groups_have_retention_and_the_key_allows_them() -> None:
    setup = _load(CICD / "1-setup" / "template.yml")
    statement = next(s for s in setup["Resources"]["Key"]["Properties"]["KeyPolicy"]["Statement"]
                     if s["Sid"] == "CloudWatchLogsEncryptsThisServicesLogGroups")
    allowed = [p["Fn::Sub"].split(":log-group:")[1]
               for p in statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]]
    for path in (CICD / "2-cicd" / "template.yml", APP_TEMPLATE):
        groups = [r["Properties"] for r in _load(path)["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
        assert groups, _rel(path)
        for group in groups:
            assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
            assert "KmsKeyId" in group
            name = _expand(group["LogGroupName"]["Fn::Sub"], {"ServiceName": "aiproxy", "EnvironmentType": "test"})
            assert any(fnmatch.fnmatchcase(name, _expand(a, {"ServiceName": "aiproxy"})) for a in allowed), name


def _gunicorn_config(task_env: dict[str, str]) -> dict:
    """gunicorn's options as src/serve.py gives them to the task (src/gunicorn_conf.options over the
    app's Settings built from the task's environment), and those Settings."""
    from lib.settings import Settings
    from src import gunicorn_conf

    env = {**task_env, "REDIS_URL": "rediss://:token@redis.example.internal:6379/0",
           "AIPROXY_MASTER_KEY": "sk-aip-master-" + "x1y2z3" * 8}
    settings = Settings.from_mapping(env)
    return {**gunicorn_conf.options(settings), "request_timeout": settings.request_timeout}


def test_timeouts_agree_with_gunicorn_and_the_app() -> None:
    """In every environment, as the task runs: REQUEST_TIMEOUT < ALB idle timeout < gunicorn keepalive (both
    as the app's settings read them from the task's environment), and ECS stop timeout > gunicorn
    graceful_timeout. Any IdleTimeoutSeconds the template allows stays below that keepalive."""
    from tests.infra.cfn import params, task_environment

    app = _load(APP_TEMPLATE)
    container = app["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    for env in ENVIRONMENTS:
        conf = _gunicorn_config(task_environment(env))
        assert container["StopTimeout"] > conf["graceful_timeout"]
        idle = int(params(env)["IdleTimeoutSeconds"])
        assert conf["request_timeout"] < idle < conf["keepalive"], (env, conf["request_timeout"], idle)
        assert int(app["Parameters"]["IdleTimeoutSeconds"]["MaxValue"]) < conf["keepalive"]
        assert conf["request_timeout"] == float(params(env)["RequestTimeoutSeconds"])


def test_production_drains_longer_than_the_slowest_request() -> None:
    """A deployment must not cut off a non-streamed answer that is still within REQUEST_TIMEOUT."""
    from tests.infra.cfn import params

    values = params("production")
    assert int(values["DrainSeconds"]) >= int(values["RequestTimeoutSeconds"])


def test_pipeline_names_files_that_exist() -> None:
    cicd = _load(CICD / "2-cicd" / "template.yml")["Resources"]
    paths = []
    for stage in cicd["Pipeline"]["Properties"]["Stages"]:
        for action in stage["Actions"]:
            for key in ("TemplatePath", "TemplateConfiguration"):
                if key in action["Configuration"]:
                    paths.append(action["Configuration"][key].split("::", 1)[1])
    paths += [cicd["BuildProject"]["Properties"]["Source"]["BuildSpec"],
              cicd["PullRequestProject"]["Properties"]["Source"]["BuildSpec"]]
    paths += re.findall(r"bash (\S+)", cicd["SmokeProject"]["Properties"]["Source"]["BuildSpec"])
    assert len(paths) == 7
    for buildspec in paths[4:6]:
        scripts = re.findall(r"bash (\S+\.sh)", (ROOT / buildspec).read_text())
        assert scripts, buildspec
        paths += scripts
    for path in paths:
        assert (ROOT / path).is_file(), path
