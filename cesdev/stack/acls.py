"""Kafka ACLs of CES's principals (KRaft StandardAuthorizer), created over the admin protocol.

aiokafka has no public ACL API, so this sends CreateAcls (API 30, v1: with pattern types) itself; no JVM tool
is needed. Creating an ACL that exists is a no-op for the broker, so `grant_ces` is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ces.adapters.kafka.connection import KafkaConnection
from ces.events import topics
from cesdev.stack.secrets import KAFKA_GATEWAY, KAFKA_PRODUCER, KAFKA_WORKER

# Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, PatternType, acl.AclOperation).
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE, IDEMPOTENT_WRITE, ALL = 3, 4, 5, 8, 12, 2
ALLOW = 3
OPERATIONS = {"READ": READ, "WRITE": WRITE, "CREATE": CREATE, "DESCRIBE": DESCRIBE, "ALL": ALL}
OPERATIONS["IDEMPOTENT_WRITE"] = IDEMPOTENT_WRITE


@dataclass(frozen=True)
class Acl:
    principal: str  # a SCRAM user name; the ACL is on User:<principal>
    resource_type: int
    name: str
    pattern: int
    operation: int


def ces_acls(prefix: str, app_id: str, producer_group_prefix: str = f"{KAFKA_PRODUCER}-") -> list[Acl]:
    """Every ACL CES's principals need for one deployment (topic prefix, app id); nothing else is allowed.

    worker:   reads requests and rates; writes decisions, rates, fetch failures, dead letters; may create its
              topics (a fresh cluster); its groups `<app_id>*`; Faust's own topics `<app_id>-*`.
    gateway:  writes requests; reads decisions (manually assigned partitions, no group).
    producer: writes requests; reads decisions with groups `ces-producer-*`.
    Nobody but the worker (and the admin super user) can write `conversions-audited` or `rates-fetched`.
    """
    t = {spec.name: prefix + spec.name for spec in topics.ALL_TOPICS}
    requests = t[topics.CONVERSION_REQUESTS.name]
    decisions = [t[topics.CONVERSIONS_AUDITED.name], t[topics.CONVERSIONS_REJECTED.name]]
    worker_reads = [requests, t[topics.RATES_FETCHED.name]]
    worker_writes = [
        *decisions,
        t[topics.RATES_FETCHED.name],
        t[topics.RATE_FETCH_FAILURES.name],
        t[topics.DEAD_LETTERS.name],
    ]
    acls = [Acl(KAFKA_WORKER, TOPIC, name, LITERAL, READ) for name in worker_reads]
    acls += [Acl(KAFKA_WORKER, TOPIC, name, LITERAL, WRITE) for name in worker_writes]
    acls += [Acl(KAFKA_WORKER, TOPIC, name, LITERAL, CREATE) for name in t.values()]
    acls += [
        Acl(KAFKA_WORKER, TOPIC, f"{app_id}-", PREFIXED, ALL),  # Faust's assignor topic
        Acl(KAFKA_WORKER, GROUP, app_id, PREFIXED, READ),
        Acl(KAFKA_WORKER, GROUP, app_id, PREFIXED, DESCRIBE),
        Acl(KAFKA_WORKER, CLUSTER, "kafka-cluster", LITERAL, IDEMPOTENT_WRITE),
    ]
    for principal in (KAFKA_GATEWAY, KAFKA_PRODUCER):
        acls.append(Acl(principal, TOPIC, requests, LITERAL, WRITE))
        acls += [Acl(principal, TOPIC, name, LITERAL, READ) for name in decisions]
        acls.append(Acl(principal, CLUSTER, "kafka-cluster", LITERAL, IDEMPOTENT_WRITE))
    acls += [
        Acl(KAFKA_PRODUCER, GROUP, producer_group_prefix, PREFIXED, READ),
        Acl(KAFKA_PRODUCER, GROUP, producer_group_prefix, PREFIXED, DESCRIBE),
    ]
    return acls


async def create(connection: KafkaConnection, acls: list[Acl]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(**connection.kwargs(), client_id="cesdev-acls")
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                acl.resource_type, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, ALLOW
            )
            response = await admin._send_request(request)
            for error_code, error_message in response.creation_responses:
                if error_code:
                    raise RuntimeError(f"creating {acl} failed: error {error_code} {error_message}")
    finally:
        await admin.close()


async def grant_ces(connection: KafkaConnection, *, prefix: str, app_id: str) -> None:
    await create(connection, ces_acls(prefix, app_id))
