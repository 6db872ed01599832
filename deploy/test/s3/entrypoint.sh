#!/bin/bash
# s3s-fs ends on SIGTERM by the signal itself; exit 0 once it has, as a
# server stopping cleanly does. Buckets are directories: S3_BUCKETS makes them.
set -euo pipefail
for bucket in ${S3_BUCKETS:-}; do mkdir -p "/data/$bucket"; done
s3s-fs --host 0.0.0.0 --port 9000 --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" /data &
server=$!
trap 'kill -TERM "$server"; wait "$server" || true; exit 0' TERM INT
wait "$server"
