"""Kafka ACLs of CES's principals (KRaft StandardAuthorizer), created over the admin protocol.

aiokafka has no public ACL API, so this sends CreateAcls (API 30), DeleteAcls (31) and DescribeAcls (29), v1 (with
pattern types), itself; no JVM tool is needed. Creating an ACL that exists is a no-op for the broker, so
`grant_ces` is idempotent; `revoke_ces` deletes exactly the ACLs `grant_ces` made for one prefix and app id
(what a test deployment removes at teardown), never a broader filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ces.adapters.kafka.connection import KafkaConnection
from ces.events import topics
from cesdev.stack.secrets import KAFKA_GATEWAY, KAFKA_PRODUCER, KAFKA_WORKER

# Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, PatternType, acl.AclOperation).
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE, IDEMPOTENT_WRITE, ALL = 3, 4, 5, 8, 12, 2
ALLOW = 3
ANY = 1  # the filter value "any" of resource type, pattern type, operation and permission
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
    gateway:  writes requests; reads decisions and new rates (for the live stream), both from manually assigned
              partitions, no group.
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
    acls.append(Acl(KAFKA_GATEWAY, TOPIC, t[topics.RATES_FETCHED.name], LITERAL, READ))
    acls += [
        Acl(KAFKA_PRODUCER, GROUP, producer_group_prefix, PREFIXED, READ),
        Acl(KAFKA_PRODUCER, GROUP, producer_group_prefix, PREFIXED, DESCRIBE),
    ]
    return acls


async def create(connection: KafkaConnection, acls: list[Acl]) -> None:
    from aiokafka.protocol.admin import CreateAclsRequest

    async with _admin(connection) as admin:
        for acl in acls:
            request = CreateAclsRequest(
                acl.resource_type, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, ALLOW
            )
            response = await admin._send_request(request)
            for error_code, error_message in response.creation_responses:
                if error_code:
                    raise RuntimeError(f"creating {acl} failed: error {error_code} {error_message}")


async def delete(connection: KafkaConnection, acls: list[Acl]) -> int:
    """Delete exactly these ACLs (each filter is one literal ACL, not a wildcard); returns how many went."""
    from aiokafka.protocol.admin import DeleteAclsRequest

    deleted = 0
    async with _admin(connection) as admin:
        for acl in acls:
            request = DeleteAclsRequest(
                acl.resource_type, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, ALLOW
            )
            response = await admin._send_request(request)
            for error_code, error_message, matching in response.filter_responses:
                if error_code:
                    raise RuntimeError(f"deleting {acl} failed: error {error_code} {error_message}")
                deleted += len(matching)
    return deleted


async def describe(connection: KafkaConnection) -> list[Acl]:
    """Every ALLOW ACL on the cluster (for tests and operators' checks)."""
    from aiokafka.protocol.admin import DescribeAclsRequest

    async with _admin(connection) as admin:
        response = await admin._send_request(DescribeAclsRequest(ANY, None, ANY, None, None, ANY, ANY))
    if response.error_code:
        raise RuntimeError(f"describing ACLs failed: error {response.error_code} {response.error_message}")
    return [
        Acl(principal.removeprefix("User:"), resource_type, name, pattern, operation)
        for resource_type, name, pattern, entries in response.resources
        for principal, _host, operation, permission in entries
        if permission == ALLOW
    ]


@asynccontextmanager
async def _admin(connection: KafkaConnection) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**connection.kwargs(), client_id="cesdev-acls")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def grant_ces(connection: KafkaConnection, *, prefix: str, app_id: str) -> None:
    await create(connection, ces_acls(prefix, app_id))


async def revoke_ces(connection: KafkaConnection, *, prefix: str, app_id: str) -> int:
    """Undo `grant_ces` for one prefix and app id, and only what is that deployment's own: an ACL that every
    deployment's grant makes alike (IDEMPOTENT_WRITE on the cluster, the producer's `ces-producer-` groups)
    is shared with every other deployment on the cluster, so it stays."""
    return await delete(connection, own_acls(prefix, app_id))


def own_acls(prefix: str, app_id: str) -> list[Acl]:
    """The ACLs of `ces_acls(prefix, app_id)` that name this deployment (its prefix or app id)."""
    shared = set(ces_acls("\x00shared-probe-", "\x00shared-probe"))
    return [acl for acl in ces_acls(prefix, app_id) if acl not in shared]
