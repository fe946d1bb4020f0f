#!/usr/bin/env bash
# Smoke test of a deployed stack through its load balancer (the pipeline runs it against the test stack):
#   1. GET  $BASE_URL/health                 -> 200 {"status": "ok", ...} (Redis reachable), retried while the
#                                               new tasks settle
#   2. POST $BASE_URL/admin/keys             -> a temporary gateway key limited to the sandbox model
#   3. POST $BASE_URL/v1/chat/completions    -> a sandbox chat: 200, non-empty answer, proxy_id, x-aiproxy-id
#   4. DELETE $BASE_URL/admin/keys/<id>      -> the temporary key is revoked, also when a step fails
# Environment: BASE_URL (https://ai-test.example.com); the master key from AIPROXY_MASTER_KEY, else read
# from Secrets Manager as MASTER_KEY_SECRET_ID (test/<dns>/aiproxy_master_key). SMOKE_HEALTH_WAIT seconds
# (default 300) bounds step 1. Secrets are never printed. Needs curl and python3.
set -euo pipefail

: "${BASE_URL:?set BASE_URL, e.g. https://ai-test.example.com}"
BASE_URL="${BASE_URL%/}"
HEALTH_WAIT="${SMOKE_HEALTH_WAIT:-300}"
workdir="$(mktemp -d)"
key_id=""

master_key="${AIPROXY_MASTER_KEY:-}"
if [ -z "$master_key" ]; then
  : "${MASTER_KEY_SECRET_ID:?set AIPROXY_MASTER_KEY or MASTER_KEY_SECRET_ID}"
  master_key="$(aws secretsmanager get-secret-value --secret-id "$MASTER_KEY_SECRET_ID" \
    --query SecretString --output text)"
fi

log() { printf 'smoke: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# json FILE EXPR: evaluate a Python expression over the parsed JSON body `d` and print the result.
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# request METHOD PATH BEARER [BODY]: writes the body to $workdir/body and headers to $workdir/headers,
# prints the status code. The bearer goes through a curl config file, so it never appears in `ps`.
request() {
  local method="$1" path="$2" bearer="$3" body="${4:-}"
  local config="$workdir/curl.conf"
  umask 077
  printf 'header = "Authorization: Bearer %s"\n' "$bearer" >"$config"
  local args=(--silent --show-error --max-time 60 --config "$config" -X "$method"
              -o "$workdir/body" -D "$workdir/headers" -w '%{http_code}')
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  curl "${args[@]}" "$BASE_URL$path" || echo 000
  rm -f "$config"
}

cleanup() {
  local status=$?
  if [ -n "$key_id" ]; then
    code="$(request DELETE "/admin/keys/$key_id" "$master_key")"
    log "revoked temporary key $key_id (HTTP $code)"
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT

# 1. health, retried: right after a deployment the load balancer may still be shifting to the new tasks.
deadline=$((SECONDS + HEALTH_WAIT))
while :; do
  code="$(curl --silent --max-time 10 -o "$workdir/health" -w '%{http_code}' "$BASE_URL/health" || echo 000)"
  if [ "$code" = 200 ] && [ "$(json "$workdir/health" 'd.get("status")')" = ok ]; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "/health answered HTTP $code for ${HEALTH_WAIT}s: $(head -c 300 "$workdir/health" 2>/dev/null)"
  sleep 5
done
log "/health ok: version $(json "$workdir/health" 'd.get("version")'), environment $(json "$workdir/health" 'd.get("environment")')"

# 2. a temporary key for the sandbox model only.
code="$(request POST /admin/keys "$master_key" \
  "{\"user_id\": \"pipeline-smoke-test\", \"name\": \"smoke ${CODEBUILD_BUILD_ID:-local}\", \"models\": [\"sandbox\"], \"rpm\": 10}")"
[ "$code" = 201 ] || fail "POST /admin/keys answered HTTP $code: $(head -c 300 "$workdir/body")"
key_id="$(json "$workdir/body" 'd["id"]')"
gateway_key="$(json "$workdir/body" 'd["key"]')"
log "issued temporary key $key_id"

# 3. a sandbox chat completion with that key.
code="$(request POST /v1/chat/completions "$gateway_key" \
  '{"model": "sandbox", "messages": [{"role": "user", "content": "pipeline smoke test: say hello"}]}')"
[ "$code" = 200 ] || fail "POST /v1/chat/completions answered HTTP $code: $(head -c 300 "$workdir/body")"
answer="$(json "$workdir/body" 'd["choices"][0]["message"]["content"]')"
[ -n "$answer" ] || fail "the sandbox answered with empty content"
proxy_id="$(json "$workdir/body" 'd["proxy_id"]')"
grep -qi '^x-aiproxy-id:' "$workdir/headers" || fail "no x-aiproxy-id header on the chat response"
log "sandbox chat ok: proxy_id $proxy_id, ${#answer} characters"
log "PASS"
