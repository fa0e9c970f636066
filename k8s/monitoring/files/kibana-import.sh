#!/usr/bin/env bash
# Idempotent import of Kibana's saved objects (kibana/*.ndjson: data view, saved
# searches), run by the Job kibana-import. A Job runs once: `make up` re-creates it (and
# so runs this again) only when its pod template changes (this script, kibana/*.ndjson:
# the ConfigMaps' name hashes) or when it changed a credential of an existing
# deployment. Waits for Kibana to report itself usable, then POSTs each file to
# /api/saved_objects/_import?overwrite=true: the objects have fixed ids, so a re-run
# overwrites them instead of adding copies.
# Reads: KIBANA_URL, ELASTIC_PASSWORD (the import needs a Kibana user with write access
# to saved objects; kibana_system is Kibana's own and may not), SAVED_OBJECTS_DIR,
# WAIT_SECONDS (default 900: Kibana's first start takes minutes on Minikube).
set -euo pipefail

: "${KIBANA_URL:?}" "${ELASTIC_PASSWORD:?}" "${SAVED_OBJECTS_DIR:?}"
WAIT_SECONDS=${WAIT_SECONDS:-900}
RESPONSE=$(mktemp)

# curl_user USER PASSWORD: a curl config line with the credentials, for -K. Inside
# its double quotes curl reads \\ as \ and \" as ".
curl_user() {
  local password=${2//\\/\\\\}
  password=${password//\"/\\\"}
  printf 'user = "%s:%s"\n' "$1" "$password"
}

# kibana ARGS...: curl as elastic (credentials from a file descriptor, never argv);
# prints the HTTP status, the body is in $RESPONSE.
kibana() {
  curl --silent --max-time 60 -o "$RESPONSE" -w '%{http_code}' \
    -K <(curl_user elastic "$ELASTIC_PASSWORD") \
    -H 'kbn-xsrf: obs-stack' "$@" || true
}

# usable: the /api/status answer in $RESPONSE says the import can run: core's
# savedObjects service is available, or Kibana as a whole is available or degraded (one
# degraded plugin makes `overall` degraded while saved objects work; /api/status still
# answers 200 then). The image has no JSON tool (no jq, no python), so this matches the
# compacted JSON: `[^{}]*` keeps each match inside one object (status.core.savedObjects,
# status.overall; plugins' names such as savedObjectsTagging do not match), whatever
# the order of its keys. A bash match, not `| grep -q`: grep -q exits at the first match
# and, under pipefail, tr's SIGPIPE on a long answer would turn that into a failure.
usable() {
  local body pattern
  body=$(tr -d ' \t\r\n' <"$RESPONSE")
  pattern='"savedObjects":\{[^{}]*"level":"available"|"overall":\{[^{}]*"level":"(available|degraded)"'
  [[ $body =~ $pattern ]]
}

deadline=$((SECONDS + WAIT_SECONDS))
until [[ $(kibana "$KIBANA_URL/api/status") == 200 ]] && usable; do
  if ((SECONDS >= deadline)); then
    echo "kibana-import: Kibana at $KIBANA_URL not usable (saved objects not available) after ${WAIT_SECONDS}s: $(head -c 500 "$RESPONSE")" >&2
    exit 1
  fi
  echo "kibana-import: waiting for Kibana at $KIBANA_URL ..."
  sleep 10
done

shopt -s nullglob
files=("$SAVED_OBJECTS_DIR"/*.ndjson)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "kibana-import: no *.ndjson in $SAVED_OBJECTS_DIR" >&2
  exit 1
fi
for file in "${files[@]}"; do
  status=$(kibana -X POST "$KIBANA_URL/api/saved_objects/_import?overwrite=true" -F "file=@$file")
  if [[ $status != 200 ]] || ! tr -d ' \n' <"$RESPONSE" | grep -q '"success":true'; then
    echo "kibana-import: importing $(basename "$file") failed: HTTP $status: $(head -c 2000 "$RESPONSE")" >&2
    exit 1
  fi
  echo "kibana-import: $(basename "$file"): $(tr -d ' \n' <"$RESPONSE" | grep -o '"successCount":[0-9]*')"
done
echo "kibana-import: done"
