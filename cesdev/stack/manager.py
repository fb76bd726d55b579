"""`cesdev stack up|status|down`: start what is missing, leave existing services alone, stop only ours."""

from __future__ import annotations

import time

from ces.settings import Settings
from cesdev.stack import process
from cesdev.stack.kafka import Kafka
from cesdev.stack.postgres import Postgres
from cesdev.stack.redis import Redis
from cesdev.stack.services import Service, Status
from cesdev.stack.system import StackError


def all_services(settings: Settings) -> list[Service]:
    """The stack, in start order: the databases first, the broker last."""
    return [Postgres(settings), Redis(settings), Kafka(settings)]


def up(settings: Settings) -> list[Status]:
    """Idempotent: a service that already answers (ours or not) is left as it is."""
    statuses = []
    for service in all_services(settings):
        started = time.monotonic()
        ours = process.running_pid(service.pid_file()) is not None
        if service.answers():
            detail = "already running" if ours else "existing service, left alone"
        else:
            if not service.endpoint.is_loopback:
                raise StackError(
                    f"{service.name}: {service.endpoint} does not answer and is not on this machine; "
                    "the stack only starts services on loopback"
                )
            if not ours and service.endpoint.accepts_connections():
                raise StackError(
                    f"{service.name}: something listens on {service.endpoint} but does not answer as "
                    f"{service.name} with the configured credentials; stop it or point CES_* elsewhere"
                )
            if ours:
                service.stop()
            service.start()
            detail = f"started in {time.monotonic() - started:.1f}s"
            ours = True
        statuses.append(Status(service.name, str(service.endpoint), ours, True, detail))
    return statuses


def status(settings: Settings) -> list[Status]:
    result = []
    for service in all_services(settings):
        pid = process.running_pid(service.pid_file())
        answers = service.answers()
        detail = f"pid {pid}" if pid else ("external" if answers else "not running")
        result.append(Status(service.name, str(service.endpoint), pid is not None, answers, detail))
    return result


def down(settings: Settings, services: list[Service] | None = None) -> list[Status]:
    """Stop, in reverse start order, only the services whose pid files `up` wrote."""
    result = []
    for service in reversed(services or all_services(settings)):
        stopped = service.stop()
        detail = "stopped" if stopped else "not ours or not running, left alone"
        # A service left alone may well still answer (someone else's, or another checkout's): say so.
        answers = not stopped and service.answers()
        result.append(Status(service.name, str(service.endpoint), stopped, answers, detail))
    return result
