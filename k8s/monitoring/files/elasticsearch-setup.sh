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
#     local stack installs), so the mapping exists before the first log line;
#   - for Jaeger, from the files of jaeger/elasticsearch/ (the local stack installs the
#     same): the index templates jaeger-span and jaeger-service (Jaeger runs with
#     create_mappings false, so it needs no privilege on templates), role obs_jaeger and user
#     jaeger (create, write and read jaeger-* indices), role obs_jaeger_index_cleaner and
#     user jaeger-index-cleaner (list and delete them: the CronJob that keeps 7 days).
# Reads: ES_URL, ELASTIC_PASSWORD, KIBANA_SYSTEM_PASSWORD, GRAFANA_PASSWORD,
# FLUENT_BIT_PASSWORD, JAEGER_PASSWORD, JAEGER_INDEX_CLEANER_PASSWORD, INDEX_TEMPLATE
# (file), JAEGER_FILES (folder), WAIT_SECONDS (default 600).
# Passwords never appear on a command line: curl reads the credentials from a file
# descriptor and request bodies from standard input.
set -euo pipefail

: "${ES_URL:?}" "${ELASTIC_PASSWORD:?}" "${KIBANA_SYSTEM_PASSWORD:?}"
: "${GRAFANA_PASSWORD:?}" "${FLUENT_BIT_PASSWORD:?}" "${INDEX_TEMPLATE:?}"
: "${JAEGER_PASSWORD:?}" "${JAEGER_INDEX_CLEANER_PASSWORD:?}" "${JAEGER_FILES:?}"
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

# Templates before the user: Jaeger's first span must not create an index with guessed
# field types.
must PUT /_index_template/jaeger-span "index template jaeger-span" "$JAEGER_FILES/jaeger-span.json"
must PUT /_index_template/jaeger-service "index template jaeger-service" \
  "$JAEGER_FILES/jaeger-service.json"
must PUT /_security/role/obs_jaeger "role obs_jaeger" "$JAEGER_FILES/role-jaeger.json"
must PUT /_security/user/jaeger "user jaeger" <(printf '{"password": %s, "roles": ["obs_jaeger"], "full_name": "Jaeger (writes and reads jaeger-*)"}' \
  "$(json_string "$JAEGER_PASSWORD")")
must PUT /_security/role/obs_jaeger_index_cleaner "role obs_jaeger_index_cleaner" \
  "$JAEGER_FILES/role-jaeger-index-cleaner.json"
must PUT /_security/user/jaeger-index-cleaner "user jaeger-index-cleaner" <(printf '{"password": %s, "roles": ["obs_jaeger_index_cleaner"], "full_name": "Jaeger es-index-cleaner (deletes old jaeger-* indices)"}' \
  "$(json_string "$JAEGER_INDEX_CLEANER_PASSWORD")")
echo "elasticsearch-setup: done"
