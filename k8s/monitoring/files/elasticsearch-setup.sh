#!/usr/bin/env bash
# Idempotent set-up of Elasticsearch for obs-stack, run as the bootstrap user `elastic`
# by the Job elasticsearch-setup. A Job runs once: `make up` re-creates it (and so runs
# this again) only when its pod template changes (this script, the index template: the
# ConfigMaps' name hashes) or when it changed a credential of an existing deployment.
# Re-running repeats the same PUTs and sets every password to the Secret's value:
#   - kibana_system's password (Kibana 8 refuses to run as elastic);
#   - role obs_grafana and user grafana: read the obs-logs-* indices (Grafana's
#     datasource) and monitor the cluster (elasticsearch-exporter);
#   - role obs_fluent_bit and user fluent-bit: write to obs-logs-* only;
#   - the index template obs-logs, from fluent-bit/index-template.json (the file the
#     local stack installs), so the mapping exists before the first log line.
# Reads: ES_URL, ELASTIC_PASSWORD, KIBANA_SYSTEM_PASSWORD, GRAFANA_PASSWORD,
# FLUENT_BIT_PASSWORD, INDEX_TEMPLATE (file), WAIT_SECONDS (default 600).
# Passwords never appear on a command line: curl reads the credentials from a file
# descriptor and request bodies from standard input.
set -euo pipefail

: "${ES_URL:?}" "${ELASTIC_PASSWORD:?}" "${KIBANA_SYSTEM_PASSWORD:?}"
: "${GRAFANA_PASSWORD:?}" "${FLUENT_BIT_PASSWORD:?}" "${INDEX_TEMPLATE:?}"
WAIT_SECONDS=${WAIT_SECONDS:-600}
RESPONSE=$(mktemp)

# A JSON string literal of $1.
json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# curl_user USER PASSWORD: a curl config line with the credentials, for -K. Inside
# its double quotes curl reads \\ as \ and \" as ".
curl_user() {
  local password=${2//\\/\\\\}
  password=${password//\"/\\\"}
  printf 'user = "%s:%s"\n' "$1" "$password"
}

# request METHOD PATH [BODY_FILE]: prints the HTTP status; the body is in $RESPONSE.
request() {
  local body=()
  if [[ $# -ge 3 ]]; then body=(-H 'Content-Type: application/json' --data-binary "@$3"); fi
  curl --silent --max-time 30 -o "$RESPONSE" -w '%{http_code}' \
    -K <(curl_user elastic "$ELASTIC_PASSWORD") \
    -X "$1" "${body[@]}" "$ES_URL$2" || true
}

# must METHOD PATH DESCRIPTION [BODY_FILE]: the request must answer 200.
must() {
  local status
  status=$(request "$1" "$2" "${@:4}")
  if [[ $status != 200 ]]; then
    echo "elasticsearch-setup: $3 failed: HTTP $status: $(head -c 2000 "$RESPONSE")" >&2
    exit 1
  fi
  echo "elasticsearch-setup: $3: ok"
}

deadline=$((SECONDS + WAIT_SECONDS))
until [[ $(request GET '/_cluster/health?wait_for_status=yellow&timeout=5s') == 200 ]]; do
  if ((SECONDS >= deadline)); then
    echo "elasticsearch-setup: $ES_URL not healthy after ${WAIT_SECONDS}s: $(head -c 500 "$RESPONSE")" >&2
    exit 1
  fi
  echo "elasticsearch-setup: waiting for $ES_URL ..."
  sleep 5
done

must POST /_security/user/kibana_system/_password "kibana_system password" \
  <(printf '{"password": %s}' "$(json_string "$KIBANA_SYSTEM_PASSWORD")")

must PUT /_security/role/obs_grafana "role obs_grafana" <(cat <<'JSON'
{
  "cluster": ["monitor"],
  "indices": [
    {"names": ["obs-logs-*"], "privileges": ["read", "view_index_metadata", "monitor"]}
  ]
}
JSON
)
must PUT /_security/user/grafana "user grafana" <(printf '{"password": %s, "roles": ["obs_grafana"], "full_name": "Grafana and elasticsearch-exporter (read-only)"}' \
  "$(json_string "$GRAFANA_PASSWORD")")

must PUT /_security/role/obs_fluent_bit "role obs_fluent_bit" <(cat <<'JSON'
{
  "cluster": [],
  "indices": [
    {"names": ["obs-logs-*"], "privileges": ["create_index", "write", "create_doc", "auto_configure"]}
  ]
}
JSON
)
must PUT /_security/user/fluent-bit "user fluent-bit" <(printf '{"password": %s, "roles": ["obs_fluent_bit"], "full_name": "Fluent Bit (writes obs-logs-*)"}' \
  "$(json_string "$FLUENT_BIT_PASSWORD")")

must PUT /_index_template/obs-logs "index template obs-logs" "$INDEX_TEMPLATE"
echo "elasticsearch-setup: done"
