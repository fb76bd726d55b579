#!/bin/sh
# docker-compose's Kafka: the broker configuration cesdev generates for it (server.properties, from
# cesdev/stack/kafka.py: the same SASL/SCRAM listeners, StandardAuthorizer and super user as the local stack),
# with CES's SCRAM users added when the storage is formatted (KIP-900: the image's own start script cannot).
# The ACLs are made by the `kafka-setup` service (`cesdev kafka-setup`, the local stack's `grant_ces`).
set -eu
for name in KAFKA_ADMIN_PASSWORD KAFKA_WORKER_PASSWORD KAFKA_GATEWAY_PASSWORD KAFKA_PRODUCER_PASSWORD; do
  eval "value=\${$name:-}"
  # They go into a JAAS string and --add-scram's [name=...,password=...] syntax: no quoting surprises allowed.
  case "$value" in
    '' | *[!A-Za-z0-9._-]*) echo "kafka: $name must be set, letters, digits, '.', '_' or '-' only" >&2; exit 1 ;;
  esac
done
umask 077
config=/tmp/server.properties
sed "s/@KAFKA_ADMIN_PASSWORD@/$KAFKA_ADMIN_PASSWORD/g" /etc/ces/server.properties > "$config"
# The healthcheck's (and an operator's `docker compose exec`) admin client configuration.
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPS
if [ ! -f /tmp/kafka-data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c "$config" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=ces-worker,password=$KAFKA_WORKER_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=ces-gateway,password=$KAFKA_GATEWAY_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=ces-producer,password=$KAFKA_PRODUCER_PASSWORD]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
