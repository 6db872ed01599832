#!/bin/bash
set -euo pipefail
{
    echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
    echo "loopback_users = none"
    echo "listeners.tcp.default = 5672"
} >"$RABBITMQ_CONFIG_FILE"
exec /usr/lib/rabbitmq/bin/rabbitmq-server
