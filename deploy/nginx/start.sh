#!/bin/sh
# Renders prod.conf.template into /tmp/nginx and runs nginx on it in the
# foreground (compose/docker-compose.prod.yml). POSIX sh and sed only, so it
# runs in the official nginx images (Alpine or Debian) as they are.
set -eu
conf_dir=/etc/nginx/stockflow
run_dir=/tmp/nginx

max_upload=${MAX_UPLOAD_BYTES:-52428800}
case "$max_upload" in
    '' | *[!0-9]*)
        printf 'config error: MAX_UPLOAD_BYTES: expected a positive integer, got "%s"\n' "$max_upload" >&2
        exit 2 ;;
esac
# The multipart envelope (boundaries, part headers, a long file name) around
# the file: an upload the api accepts is never cut off here.
body_limit=$((max_upload + 1048576))

mkdir -p "$run_dir"
tls_server=$run_dir/tls-server.conf
if [ -f /etc/nginx/tls/tls.crt ] && [ -f /etc/nginx/tls/tls.key ]; then
    cp "$conf_dir/tls.conf.template" "$tls_server"
    echo "nginx: TLS on 8443 with /etc/nginx/tls/tls.crt" >&2
else
    : >"$tls_server"
fi

sed -e "s/@CLIENT_MAX_BODY_SIZE@/$body_limit/" \
    -e "/@TLS_SERVER@/{r $tls_server" -e 'd;}' \
    "$conf_dir/prod.conf.template" >"$run_dir/nginx.conf"

nginx -e /dev/stderr -t -q -c "$run_dir/nginx.conf"
exec nginx -e /dev/stderr -c "$run_dir/nginx.conf" -g 'daemon off;'
