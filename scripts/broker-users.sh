#!/bin/sh
# Per-service RabbitMQ users with only the permissions each needs (issue 14; the same as
# qcare_ingest/topology.py PERMISSIONS, which tests/integration/test_broker_users.py runs
# the services with). Idempotent: run it again to reset passwords and permissions.
#
# Uses rabbitmqadmin (shipped in the rabbitmq:*-management images) against the management
# API as the administrator; compose runs it as the one-shot `broker-users` service.
# Without Docker, the same with rabbitmqctl:
#   rabbitmqctl add_user NAME PASSWORD   (or change_password)
#   rabbitmqctl set_permissions -p VHOST NAME CONFIGURE WRITE READ
set -eu
: "${RABBITMQ_HOST:=rabbitmq}" "${RABBITMQ_VHOST:=/}"
: "${RABBITMQ_USER:?the administrator}" "${RABBITMQ_PASSWORD:?the administrator's password}"

admin() {
    rabbitmqadmin -H "$RABBITMQ_HOST" -u "$RABBITMQ_USER" -p "$RABBITMQ_PASSWORD" "$@"
}

permit() {  # user configure write read; the password from ${user's variable}_PASSWORD
    eval "password=\${$5:?set $5}"
    admin declare user name="$1" password="$password" tags=
    admin declare permission vhost="$RABBITMQ_VHOST" user="$1" \
        configure="$2" write="$3" read="$4"
}

# gateway: publishes to the exchange qcare.ingest; declares nothing; reads the DLQ (console)
permit "$QCARE_GATEWAY_AMQP_USER" '^$' '^qcare\.ingest$' '^qcare\.ingest\.dlq$' QCARE_GATEWAY_AMQP_PASSWORD
# workers: consume qcare.ingest; publish to the DLX and (default exchange) the delay queues
permit "$QCARE_WORKER_AMQP_USER" '^$' '^(amq\.default|qcare\.ingest\.dlx)$' '^qcare\.ingest$' QCARE_WORKER_AMQP_PASSWORD
# the CLI (dlq, status): reads the DLQ and the main queue's head, replays to the exchange
permit "$QCARE_CLI_AMQP_USER" '^$' '^qcare\.ingest$' '^qcare\.ingest(\.dlq)?$' QCARE_CLI_AMQP_PASSWORD
