"""The app stack's production choices: image tags, parameter values and rules per environment, Redis's
eviction policy and alarms, rollback on the 5xx alarm, ECS Exec, Bedrock, WAF tuning, dashboard, queries."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.cfn import (APP, ENVIRONMENTS, SETUP, container, iam_statements, load, params, resolve,
                             statement_actions, task_environment)

SHA = "0123456789abcdef0123456789abcdef01234567"


def _res() -> dict:
    return load(APP)["Resources"]


# ---- parameters ------------------------------------------------------------------------------------

def test_image_tag_is_a_full_commit_id() -> None:
    pattern = load(APP)["Parameters"]["ImageTag"]["AllowedPattern"]
    assert re.fullmatch(pattern, SHA)
    for bad in ("latest", SHA[:7], SHA.upper(), SHA + "0", "set-by-the-pipeline", f"{SHA}\n"):
        assert not re.fullmatch(pattern, bad), bad


def _violations(values: dict[str, str]) -> list[str]:
    """What CloudFormation would refuse in ``values``: AllowedPattern/AllowedValues/Min/Max, and Rules."""
    declared = load(APP)["Parameters"]
    out = []
    for name, spec in declared.items():
        value = values.get(name, spec.get("Default"))
        if value is None:
            out.append(f"{name} is required")
            continue
        value = str(value)
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            out.append(f"{name}={value!r} does not match {spec['AllowedPattern']}")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            out.append(f"{name}={value!r} not in {spec['AllowedValues']}")
        if spec["Type"] == "Number":
            if "MinValue" in spec and float(value) < float(spec["MinValue"]):
                out.append(f"{name}={value} < {spec['MinValue']}")
            if "MaxValue" in spec and float(value) > float(spec["MaxValue"]):
                out.append(f"{name}={value} > {spec['MaxValue']}")

    def ev(node: object) -> object:
        if isinstance(node, dict):
            (fn, arg), = node.items()
            if fn == "Ref":
                return str(values.get(arg, declared[arg].get("Default")))
            if fn == "Fn::Equals":
                return str(ev(arg[0])) == str(ev(arg[1]))
            if fn == "Fn::Not":
                return not ev(arg[0])
            if fn == "Fn::And":
                return all(ev(a) for a in arg)
            if fn == "Fn::Or":
                return any(ev(a) for a in arg)
            raise AssertionError(f"rule function {fn} is not evaluated by this test")
        return node

    for name, rule in load(APP).get("Rules", {}).items():
        if "RuleCondition" in rule and not ev(rule["RuleCondition"]):
            continue
        out += [f"rule {name}: {a['AssertDescription']}" for a in rule["Assertions"] if not ev(a["Assert"])]
    return out


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_parameter_files_satisfy_the_templates_constraints_and_rules(env: str) -> None:
    """cfn-lint checks the files' names and types, not their values against AllowedPattern or Rules."""
    assert _violations(params(env)) == []
    assert _violations({**params(env), "ImageTag": SHA}) == []


def test_dev_and_test_may_run_one_task_and_one_redis_node_production_may_not() -> None:
    for env in ("development", "test"):
        assert params(env)["DesiredCount"] == "1" and params(env)["RedisNodeCount"] == "1"
    production = params("production")
    assert int(production["DesiredCount"]) >= 2 and production["RedisNodeCount"] == "2"
    assert _violations({**production, "DesiredCount": "1"}) == [
        "rule ProductionSurvivesTheLossOfOneZone: production runs at least two tasks (DesiredCount >= 2), one per AZ"]
    assert len(_violations({**production, "RedisNodeCount": "1"})) == 1
    assert len(_violations({**production, "ImageTag": "latest"})) == 1
    redis = _res()["Redis"]["Properties"]
    assert redis["NumCacheClusters"] == {"Ref": "RedisNodeCount"}
    assert redis["MultiAZEnabled"] == redis["AutomaticFailoverEnabled"] == {"Fn::If": ["RedisMultiAz", True, False]}
    assert load(APP)["Conditions"]["RedisMultiAz"] == {"Fn::Equals": [{"Ref": "RedisNodeCount"}, 2]}


def test_bodies_are_off_and_retention_is_set_in_every_environment() -> None:
    for env in ENVIRONMENTS:
        task = task_environment(env)
        assert task["LOG_BODIES"] == "false", env
        assert 1 <= int(task["LOG_RETENTION_DAYS"]) <= 30, env
        assert task["REQUEST_TIMEOUT"] == params(env)["RequestTimeoutSeconds"]


# ---- Redis -------------------------------------------------------------------------------------------

def test_state_in_redis_is_never_evicted() -> None:
    res = _res()
    redis = res["Redis"]["Properties"]
    group = res[redis["CacheParameterGroupName"]["Ref"]]
    assert group["Type"] == "AWS::ElastiCache::ParameterGroup"
    assert group["Properties"]["Properties"]["maxmemory-policy"] == "noeviction"
    family = group["Properties"]["CacheParameterGroupFamily"]
    for version in load(APP)["Parameters"]["RedisEngineVersion"]["AllowedValues"]:
        assert family == "redis" + version.split(".")[0], (family, version)
    assert redis["Engine"] == "redis"


def _alarms() -> dict[str, dict]:
    return {n: r["Properties"] for n, r in _res().items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _metric_names(alarm: dict) -> set[str]:
    names = {alarm.get("MetricName")}
    for m in alarm.get("Metrics", []):
        if "Fn::If" in m:
            m = m["Fn::If"][1]
        names.add(m.get("MetricStat", {}).get("Metric", {}).get("MetricName"))
    return names - {None}


def test_alarms_cover_requests_and_redis_and_reach_the_topic() -> None:
    alarms = _alarms()
    wanted = {"HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count", "TargetResponseTime", "UnHealthyHostCount",
              "DatabaseMemoryUsagePercentage", "Evictions", "EngineCPUUtilization"}
    assert wanted <= set().union(*map(_metric_names, alarms.values()))
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    memory = next(a for a in alarms.values() if "DatabaseMemoryUsagePercentage" in _metric_names(a))
    assert memory["Threshold"] == {"Ref": "RedisMemoryAlarmPercent"}
    assert int(load(APP)["Parameters"]["RedisMemoryAlarmPercent"]["Default"]) <= 80
    evictions = next(a for a in alarms.values() if "Evictions" in _metric_names(a))
    assert evictions["Threshold"] == 0 and evictions["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize("metric", ["DatabaseMemoryUsagePercentage", "Evictions", "EngineCPUUtilization"])
def test_redis_alarms_watch_every_node(metric: str) -> None:
    (alarm,) = [a for a in _alarms().values() if metric in _metric_names(a)]
    nodes = []
    for m in alarm["Metrics"]:
        conditional = "Fn::If" in m
        m = m["Fn::If"][1] if conditional else m
        if "MetricStat" in m:
            (dim,) = m["MetricStat"]["Metric"]["Dimensions"]
            assert dim["Name"] == "CacheClusterId"
            nodes.append((dim["Value"]["Fn::Sub"], conditional))
    assert nodes == [("${Redis}-001", False), ("${Redis}-002", True)]
    expression = next(m for m in alarm["Metrics"] if "Expression" in m)["Expression"]["Fn::If"]
    assert expression[0] == "RedisMultiAz" and "m2" in expression[1] and "m2" not in expression[2]


# ---- deployments, exec, Bedrock ------------------------------------------------------------------------

def test_a_release_that_answers_5xx_rolls_back_by_itself() -> None:
    config = _res()["Service"]["Properties"]["DeploymentConfiguration"]
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert config["Alarms"]["Enable"] is True and config["Alarms"]["Rollback"] is True
    (name,) = config["Alarms"]["AlarmNames"]
    assert "HTTPCode_Target_5XX_Count" in _metric_names(_alarms()[name["Ref"]])


def test_ecs_exec_is_encrypted_logged_and_permitted() -> None:
    res = _res()
    assert res["Service"]["Properties"]["EnableExecuteCommand"] == {"Fn::If": ["ExecEnabled", True, False]}
    exec_config = res["Cluster"]["Properties"]["Configuration"]["ExecuteCommandConfiguration"]
    assert exec_config["KmsKeyId"] == {"Fn::ImportValue": {"Fn::Sub": "${ServiceName}:KeyArn"}}
    assert exec_config["Logging"] == "OVERRIDE"
    log = exec_config["LogConfiguration"]
    assert log["CloudWatchEncryptionEnabled"] is True
    group = resolve(res[log["CloudWatchLogGroupName"]["Ref"]]["Properties"]["LogGroupName"],
                    {"ServiceName": "aiproxy", "EnvironmentType": "production"})
    # The SSM agent gets writable state and log directories; the root filesystem stays read-only.
    c = container()
    assert c["ReadonlyRootFilesystem"] is True
    assert {m["ContainerPath"] for m in c["MountPoints"]} >= {"/var/lib/amazon", "/var/log/amazon"}
    setup = load(SETUP)
    actions = {a for s in iam_statements(setup, "ProductionTaskRole") for a in statement_actions(s)}
    assert {"ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel", "kms:Decrypt", "logs:PutLogEvents"} <= actions
    (logs,) = [s for s in iam_statements(setup, "ProductionTaskRole") if "logs:PutLogEvents" in statement_actions(s)]
    assert [resolve(r) for r in [logs["Resource"]]] == [
        f"arn:aws:logs:us-east-1:123456789012:log-group:{group}:*"]


def test_bedrock_is_granted_only_when_model_arns_are_given() -> None:
    setup = load(SETUP)
    param = setup["Parameters"]["BedrockModelArns"]
    assert param["Type"] == "CommaDelimitedList" and param["Default"] == ""
    assert setup["Conditions"]["HasBedrock"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "BedrockModelArns"}]}, ""]}]}
    policies = [r for r in setup["Resources"].values() if "bedrock" in json.dumps(r.get("Properties", {})).lower()
                and r["Type"].startswith("AWS::IAM::")]
    (policy,) = [p for p in policies if p["Type"] == "AWS::IAM::ManagedPolicy"]
    assert policy["Condition"] == "HasBedrock"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert statement["Resource"] == {"Ref": "BedrockModelArns"}
    roles = policy["Properties"]["Roles"]
    assert {"Ref": "ProductionTaskRole"} in roles and {"Ref": "TestTaskRole"} in roles
    assert "Execution" not in json.dumps(roles)
    # Nothing else in the setup stack mentions Bedrock (the roles do not get it any other way).
    assert policies == [policy]


# ---- WAF ------------------------------------------------------------------------------------------------

def _rules() -> dict[str, dict]:
    return {r["Name"]: r for r in _res()["WebAcl"]["Properties"]["Rules"]}


def test_rate_limits_follow_the_key_not_only_the_ip() -> None:
    rules = _rules()
    keyed = {r["Statement"]["RateBasedStatement"]["CustomKeys"][0]["Header"]["Name"]
             for r in rules.values() if r["Statement"].get("RateBasedStatement", {}).get("AggregateKeyType") == "CUSTOM_KEYS"}
    assert keyed == {"authorization", "x-api-key"}
    per_ip = rules["RatePerClientIp"]["Statement"]["RateBasedStatement"]
    default = int(load(APP)["Parameters"][per_ip["Limit"]["Ref"]]["Default"])
    assert default >= 50000, "callers behind one NAT share an IP: the per-IP ceiling must be high"
    anonymous = json.dumps(rules["RateAnonymousPerClientIp"]["Statement"])
    for header in ("authorization", "x-api-key", "x-api-token"):
        assert f'"Name": "{header}"' in anonymous


def test_body_rules_count_on_the_api_and_block_elsewhere() -> None:
    rules = _rules()
    common = rules["CommonRules"]["Statement"]["ManagedRuleGroupStatement"]
    counted = {o["Name"] for o in common["RuleActionOverrides"] if o["ActionToUse"] == {"Count": {}}}
    assert {"SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY"} <= counted
    bad = rules["KnownBadInputs"]["Statement"]["ManagedRuleGroupStatement"]
    assert {o["Name"] for o in bad["RuleActionOverrides"]} == {"Log4JRCE_BODY", "JavaDeserializationRCE_BODY"}
    assert all(n.endswith("_BODY") for n in counted)  # header, URI and query rules still block
    outside = rules["BodyRulesOutsideTheApi"]
    assert outside["Action"] == {"Block": {}} and outside["Priority"] > rules["CommonRules"]["Priority"]
    text = json.dumps(outside["Statement"])
    for namespace in ("awswaf:managed:aws:core-rule-set:", "awswaf:managed:aws:known-bad-inputs:"):
        assert namespace in text
    prefixes = set(re.findall(r'"SearchString": "([^"]+)"', text))
    # Every JSON API route of the contract is exempted (prompts travel there), and no page is.
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/proxy", "/api/v1/webhook",
                 "/admin/keys", "/vendor-a/messages"):
        assert any(path.startswith(p) for p in prefixes), path
    for page in ("/", "/chat", "/docs", "/keys", "/logs", "/dashboard"):
        assert not any(page.startswith(p) for p in prefixes), page


# ---- dashboard and saved queries -------------------------------------------------------------------------

def test_dashboard_is_valid_json_and_shows_every_alarm() -> None:
    res = _res()
    text, variables = res["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{([^}]+)\}", lambda m: "x-" + m.group(1).replace(".", "-"), text)
    body = json.loads(rendered)
    assert body["widgets"]
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    shown = {a.removeprefix("x-").removesuffix("-Arn") for a in alarm_widget["properties"]["alarms"]}
    assert shown == set(_alarms())
    assert set(variables) == {"Lb", "Tg"}


def _billing_fields() -> set[str]:
    try:
        from lib.records.requestlog import RequestRecord, billing_line
    except ImportError:  # before lib/ moved it
        from lib.requestlog import RequestRecord, billing_line
    record = RequestRecord(proxy_id="00000000-0000-0000-0000-000000000000", created_at=1.7e9,
                           endpoint="/v1/chat/completions", key_id="k1", user_id="u1", model="m", provider="p")
    return set(json.loads(billing_line(record)))


def test_saved_queries_read_fields_the_billing_line_has() -> None:
    fields = _billing_fields()
    assert {"event", "key_id", "model", "provider", "status", "cost_usd", "total_tokens"} <= fields
    queries = {n: r["Properties"] for n, r in _res().items() if r["Type"] == "AWS::Logs::QueryDefinition"}
    assert {"CostByKeyModelDayQuery", "ErrorsByProviderQuery"} <= set(queries)
    for name, query in queries.items():
        assert query["LogGroupNames"] == [{"Ref": "LogGroup"}], name
        text = query["QueryString"]
        assert text.startswith('filter event = "billing"'), name
        aliases = set(re.findall(r"\bas (\w+)", text))
        words = set(re.findall(r"\b([a-z_]+)\b(?!\s*\()", re.sub(r'"[^"]*"|@\w+', "", text)))
        keywords = {"filter", "and", "or", "fields", "as", "stats", "by", "sort", "desc", "asc", "limit", "d", "h"}
        unknown = words - fields - aliases - keywords
        assert not unknown, f"{name} reads fields the billing line does not have: {sorted(unknown)}"
    assert "key_id" in queries["CostByKeyModelDayQuery"]["QueryString"]
    assert "provider" in queries["ErrorsByProviderQuery"]["QueryString"]
