#!/bin/sh
# Makes the development certificates of cluster TLS for docker-compose.yml: a CA of its
# own and one certificate signed by it, which every node and the gateway present and
# check their peers against ([cluster.tls] in node.toml and gateway.toml).
#
#   sh deploy/compose/make-cluster-certs.sh DIR
#
# writes DIR/ca.crt, DIR/tls.crt and DIR/tls.key, unless they are there already (so a
# `docker compose up` after the first keeps them). The CA's key is thrown away: nothing
# else is ever signed by it. For development only; production brings its own CA
# (README, "Cluster TLS").
#
# The certificate names $WAFLEET_TLS_SERVER_NAME (default wafleet-cluster, the default
# cluster.tls.server_name) and allows server and client authentication. The files are
# given to $WAFLEET_TLS_OWNER (default 10001:10001, the image's user) when run as root.
set -eu

dir="${1:?usage: make-cluster-certs.sh DIR}"
name="${WAFLEET_TLS_SERVER_NAME:-wafleet-cluster}"
owner="${WAFLEET_TLS_OWNER-10001:10001}"

if [ -s "$dir/ca.crt" ] && [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ]; then
  echo "cluster certificates already in $dir"
  exit 0
fi
if ! command -v openssl >/dev/null 2>&1; then
  apk add --no-cache openssl >/dev/null
fi

umask 077
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/ca.key" -out "$work/ca.crt" -days 3650 \
  -subj "/CN=wafleet development cluster CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$name" 2>/dev/null
cat > "$work/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name
EXT
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -days 825 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null

cp "$work/ca.crt" "$work/tls.crt" "$work/tls.key" "$dir/"
chmod 0444 "$dir/ca.crt" "$dir/tls.crt"
chmod 0400 "$dir/tls.key"
if [ -n "$owner" ] && [ "$(id -u)" = 0 ]; then
  chown "$owner" "$dir/ca.crt" "$dir/tls.crt" "$dir/tls.key"
fi
echo "cluster certificates for $name written to $dir"
