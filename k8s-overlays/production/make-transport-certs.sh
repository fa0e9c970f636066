#!/usr/bin/env bash
# The certificates of Elasticsearch's transport TLS (k8s-overlays/production/
# elasticsearch.yml): a CA and one node certificate that the three nodes share, signed by
# it. openssl only.
#
#   make-transport-certs.sh OUTDIR            writes OUTDIR/ca.crt, tls.crt, tls.key
#   make-transport-certs.sh --apply OUTDIR    also creates or updates the Secret
#                                             elasticsearch-transport-tls in obs-monitoring
#                                             (kubectl's current context; KUBECTL to choose
#                                             the kubectl)
#
# The node certificate names the nodes' DNS names under the headless Service
# (elasticsearch-N.elasticsearch-nodes.obs-monitoring.svc, with and without
# .cluster.local, and the wildcard), localhost and 127.0.0.1, and may serve and be
# presented as a client (transport connections go both ways). The nodes check only that a
# peer's certificate is signed by the CA (verification_mode certificate), so the names
# matter only if you change that to full. The CA's key is not kept: a new node
# certificate means a new CA, and all three nodes restarted with the new Secret. Valid
# for DAYS days (default 825); note the date, nothing here renews them.
# RSA 2048 and SHA-256. tls.key is written mode 0600.
set -euo pipefail

usage() {
  echo "usage: $0 [--apply] OUTDIR" >&2
  exit 2
}

apply=false
if [[ ${1:-} == --apply ]]; then
  apply=true
  shift
fi
[[ $# -eq 1 && -n $1 ]] || usage
out=$1
days=${DAYS:-825}
namespace=obs-monitoring
service=elasticsearch-nodes

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sans="DNS:*.$service.$namespace.svc,DNS:*.$service.$namespace.svc.cluster.local"
for i in 0 1 2; do
  sans+=",DNS:elasticsearch-$i.$service.$namespace.svc"
  sans+=",DNS:elasticsearch-$i.$service.$namespace.svc.cluster.local"
done
sans+=",DNS:$service.$namespace.svc,DNS:localhost,IP:127.0.0.1"

# The CA: self-signed, allowed to sign certificates and nothing below it.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -subj "/CN=obs-stack elasticsearch transport CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>"$work/openssl.log" \
  || { cat "$work/openssl.log" >&2; exit 1; }

# The node's key and certificate request, then the CA's signature with the extensions.
(umask 077 && openssl req -newkey rsa:2048 -nodes -sha256 \
  -subj "/CN=elasticsearch-nodes.$namespace.svc" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>"$work/openssl.log") \
  || { cat "$work/openssl.log" >&2; exit 1; }
cat >"$work/node.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EOF
openssl x509 -req -sha256 -days "$days" -in "$work/tls.csr" \
  -CA "$work/ca.crt" -CAkey "$work/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
  -extfile "$work/node.ext" -out "$work/tls.crt" 2>"$work/openssl.log" \
  || { cat "$work/openssl.log" >&2; exit 1; }

cp "$work/ca.crt" "$work/tls.crt" "$out/"
install -m 0600 "$work/tls.key" "$out/tls.key"
echo "make-transport-certs: $out/ca.crt, $out/tls.crt, $out/tls.key (valid $days days)"

if $apply; then
  # create --dry-run | apply: creates the Secret, or replaces its keys if it exists.
  "${KUBECTL:-kubectl}" create secret generic elasticsearch-transport-tls \
    --namespace "$namespace" \
    --from-file=ca.crt="$out/ca.crt" --from-file=tls.crt="$out/tls.crt" \
    --from-file=tls.key="$out/tls.key" --dry-run=client -o yaml \
    | "${KUBECTL:-kubectl}" apply --server-side --field-manager=obs-stack-up -f -
fi
