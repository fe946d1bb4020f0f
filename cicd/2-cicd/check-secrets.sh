#!/usr/bin/env bash
# Before an environment is deployed: does each secret it is configured to keep exist in Secrets Manager?
#   check-secrets.sh cicd/3-app/aiproxy/params/<environment>.json
# The names come from the params file the stack is deployed with: AppSecretNames (the task's
# AIPROXY_SECRET_NAMES; the template's default when the file does not set it), under
# <EnvironmentType>/<DnsRecord>/<name>, the ids lib/secrets.py reads. Each is looked up with
# `aws secretsmanager describe-secret` (metadata only: the pipeline never reads a value).
#   required: every listed name except the optional ones below. Missing, scheduled for deletion or without
#             a current version fails the check (the task would start without it).
#   optional: honeybadger_api_key (error reporting). Missing is a warning.
#   any other error (AccessDenied, KMS, throttling, network) fails the check for every name: it means the
#   check's role, or the environment, is set up wrongly, and the app would stop on the same error.
# REDIS_URL and the Redis auth token are created by the app stack itself and are not checked here.
set -euo pipefail
cd "$(dirname "$0")/../.."
params="${1:?usage: check-secrets.sh PARAMS_FILE}"
OPTIONAL_SECRETS="${OPTIONAL_SECRETS:-honeybadger_api_key}"
template="cicd/3-app/aiproxy/template.yml"

read -r environment dns names < <(python3 - "$params" "$template" <<'PY'
import json, re, sys
values = json.load(open(sys.argv[1]))["Parameters"]
names = values.get("AppSecretNames")
if names is None:  # the template's default (a flat YAML scalar; no YAML parser needed)
    text = open(sys.argv[2]).read()
    names = re.search(r"^  AppSecretNames:\n(?:    .*\n)*?    Default: (\S+)", text, re.M).group(1)
print(values["EnvironmentType"], values["DnsRecord"], names)
PY
)

failed=0
checked=0
IFS=',' read -ra wanted <<<"$names"
for name in "${wanted[@]}"; do
  [ -n "$name" ] || continue
  id="$environment/$dns/$name"
  optional=no
  [[ ",$OPTIONAL_SECRETS," == *",$name,"* ]] && optional=yes
  checked=$((checked + 1))
  if out="$(aws secretsmanager describe-secret --secret-id "$id" --output json 2>"${TMPDIR:-/tmp}/check-secrets.err")"; then
    problem="$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
if d.get("DeletedDate"):
    print("is scheduled for deletion")
elif not any("AWSCURRENT" in stages for stages in (d.get("VersionIdsToStages") or {}).values()):
    print("has no current value")
' "$out")"
  else
    err="$(cat "${TMPDIR:-/tmp}/check-secrets.err")"
    if [[ "$err" == *"(ResourceNotFoundException)"* ]]; then
      problem="does not exist"
    else
      echo "check-secrets: FAIL $id: $(printf '%s' "$err" | tr -s '\n' ' ' | head -c 300)" >&2
      failed=$((failed + 1))
      continue
    fi
  fi
  if [ -z "$problem" ]; then
    echo "check-secrets: ok $id"
  elif [ "$optional" = yes ]; then
    echo "check-secrets: warning: optional secret $id $problem" >&2
  else
    echo "check-secrets: FAIL required secret $id $problem" >&2
    failed=$((failed + 1))
  fi
done

[ "$checked" -gt 0 ] || { echo "check-secrets: FAIL: $params lists no secrets" >&2; exit 1; }
if [ "$failed" -gt 0 ]; then
  echo "check-secrets: $failed problem(s) in $environment/$dns/ (create them as in cicd/README.md, or drop" \
       "the name from AppSecretNames in $params)" >&2
  exit 1
fi
echo "check-secrets: PASS ($checked secret(s) under $environment/$dns/)"
