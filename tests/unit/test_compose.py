"""Dockerfile, .dockerignore and docker-compose.kafka.yml hold together, checked without a Docker daemon."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ces.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The CES processes the compose file runs from the project's image, and the `ces` arguments of each.
CES_COMMANDS: dict[str, list[str]] = {
    "migrate": ["db", "upgrade"],
    "worker": ["worker"],
    "gateway": ["gateway"],
    "provider-sim": ["provider-sim"],
    "kafka-setup": ["kafka-setup"],
}
# Services that run the development command (`cesdev`) instead of the image's `ces` entrypoint.
DEV_ENTRYPOINTS: dict[str, list[str]] = {"provider-sim": ["cesdev"], "kafka-setup": ["cesdev"]}
KAFKA_DIR = ROOT / "scripts" / "compose" / "kafka"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{COMPOSE_FILE.name} is not a YAML mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "the compose file has no `services` mapping"
    assert found, "the compose file declares no services"
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's two spellings (mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(([*item.split("=", 1), ""])[:2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}; the short list form means `service_started`."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` (Kafka's listener syntax) as {NAME: (host, port)}; an empty host stays empty."""
    parsed: dict[str, tuple[str, int]] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, _, address = entry.partition("://")
        host, _, port = address.rpartition(":")
        parsed[name] = (host, int(port))
    return parsed


def published_container_ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service publishes on the host (short `[ip:]host:container` or long syntax)."""
    ports: set[int] = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and `\\` continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def command_words(args: str) -> list[str]:
    """The words of an ENTRYPOINT/CMD, exec form (JSON array) or shell form."""
    if args.startswith("["):
        words = json.loads(args)
        assert isinstance(words, list)
        return [str(word) for word in words]
    return shlex.split(args)


def compose_cli_missing() -> str | None:
    """Why `docker compose` cannot be run here, or None when it can (`config` needs no daemon)."""
    docker = shutil.which("docker")
    if docker is None:
        return "the docker client is not installed"
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        return f"the docker compose plugin is not installed ({(probe.stderr or probe.stdout).strip()[:120]})"
    return None


# ------------------------------------------------------------------------------------------ compose CLI


def test_docker_compose_config_accepts_the_file() -> None:
    reason = compose_cli_missing()
    if reason is not None:
        pytest.skip(f"cannot run `docker compose config`: {reason}")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_v1_accepts_the_file_and_binds_to_loopback(tmp_path: Path) -> None:
    """Where only the legacy `docker-compose` (1.29, Debian's package) is installed: it validates the same
    schema offline, minus the top-level `name` it predates; every published port lands on CES_BIND."""
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.skip("the legacy docker-compose is not installed either")
    text = "".join(line for line in COMPOSE_FILE.read_text().splitlines(True) if not line.startswith("name:"))
    copy = ROOT / f".compose-check-{os.getpid()}.yml"  # in the checkout: its relative mounts must resolve
    copy.write_text(text)
    try:
        for bind in (None, "0.0.0.0"):
            env = {k: v for k, v in os.environ.items() if k != "CES_BIND"} | ({"CES_BIND": bind} if bind else {})
            result = subprocess.run(
                [legacy, "-f", str(copy), "config"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
            )
            assert result.returncode == 0, result.stderr
            published = re.findall(r"^\s*- (\S+):\d+:\d+/tcp$", result.stdout, re.MULTILINE)
            assert published and set(published) == {bind or "127.0.0.1"}
    finally:
        copy.unlink()


# ------------------------------------------------------------------------------------- compose, as YAML


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, service in services.items() if not (service.get("image") or service.get("build"))]
    assert missing == []


def test_the_expected_services_are_declared(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "postgres", "redis", *CES_COMMANDS} <= set(services)


def test_every_dependency_is_a_declared_service_that_can_meet_its_condition(
    services: dict[str, dict[str, Any]],
) -> None:
    problems: list[str] = []
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            if target not in services:
                problems.append(f"{name} depends on undeclared service {target!r}")
            elif condition not in CONDITIONS:
                problems.append(f"{name} -> {target}: unknown condition {condition!r}")
            elif condition == "service_healthy" and not services[target].get("healthcheck"):
                problems.append(f"{name} waits for {target} to be healthy, but {target} has no healthcheck")
            elif condition == "service_completed_successfully" and services[target].get("restart") not in (
                None,
                "no",
            ):
                problems.append(f"{name} waits for {target} to complete, but {target} restarts")
    assert problems == []


def test_ces_processes_wait_for_their_backing_services(services: dict[str, dict[str, Any]]) -> None:
    assert dependencies(services["migrate"]) == {"postgres": "service_healthy"}
    for name in ("worker", "gateway"):
        deps = dependencies(services[name])
        assert deps.get("kafka") == "service_healthy", name
        assert deps.get("migrate") == "service_completed_successfully", name


@pytest.mark.parametrize("name", ["kafka", "postgres", "redis"])
def test_backing_services_have_healthchecks(services: dict[str, dict[str, Any]], name: str) -> None:
    test = services[name].get("healthcheck", {}).get("test")
    assert test, f"{name} has no healthcheck test"


def broker(path: Path = KAFKA_DIR / "server.properties") -> dict[str, str]:
    """The compose broker's server.properties (what its entrypoint runs, the admin password substituted)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_kafka_runs_the_generated_configuration_through_the_sasl_entrypoint(
    services: dict[str, dict[str, Any]],
) -> None:
    from cesdev.stack.kafka import compose_properties

    kafka = services["kafka"]
    assert str(kafka.get("image", "")).startswith("apache/kafka:")
    assert (KAFKA_DIR / "server.properties").read_text(encoding="utf-8") == compose_properties(), (
        "scripts/compose/kafka/server.properties is stale: run `python -m cesdev.stack.kafka`"
    )
    mounts = {m.split(":")[1]: m.split(":")[0] for m in kafka["volumes"]}
    assert (ROOT / mounts["/etc/ces/server.properties"]).resolve() == KAFKA_DIR / "server.properties"
    assert (ROOT / mounts["/etc/ces/kafka-sasl.sh"]).resolve() == KAFKA_DIR / "kafka-sasl.sh"
    assert kafka["entrypoint"] == ["/bin/sh", "/etc/ces/kafka-sasl.sh"]
    assert "--command-config /tmp/admin.properties" in " ".join(kafka["healthcheck"]["test"])


def security_view(props: dict[str, str]) -> dict[str, object]:
    """What decides who may connect and do what, independent of listener names and addresses."""
    names = [n for n in props["listener.security.protocol.map"].split(",")]
    client = [n.split(":")[0] for n in names if not n.startswith(props["controller.listener.names"] + ":")]
    return {
        "protocols": {n.split(":")[1] for n in names},
        "client_mechanisms": {props[f"listener.name.{c.lower()}.sasl.enabled.mechanisms"] for c in client},
        "client_login": {
            props[f"listener.name.{c.lower()}.scram-sha-512.sasl.jaas.config"].split(" ")[0] for c in client
        },
        "inter_broker_is_a_client_listener": props["inter.broker.listener.name"] in client,
        **{key: props[key] for key in sorted(props) if key.startswith(("sasl.", "authorizer.", "super.", "allow."))},
        "controller": props["listener.name.controller.sasl.enabled.mechanisms"],
    }


def test_kafka_in_compose_has_the_local_stacks_security() -> None:
    """SASL_PLAINTEXT + SCRAM-SHA-512 on every client listener, the StandardAuthorizer, deny by default,
    `admin` the only super user: the same settings, from the same code, as the broker cesdev runs (checked
    against the running stack's file when there is one)."""
    from cesdev.stack.kafka import SECURITY_PROPERTIES, broker_properties

    compose = broker()
    local = broker_properties(
        listeners={"CLIENT": ("127.0.0.1:9092", "127.0.0.1:9092")},
        controller="127.0.0.1:9093",
        admin_password="x",
        log_dirs="/d",
    )
    assert SECURITY_PROPERTIES.items() <= compose.items()
    assert security_view(compose) == security_view(local)
    assert security_view(compose)["protocols"] == {"SASL_PLAINTEXT"}
    assert compose["allow.everyone.if.no.acl.found"] == "false" and compose["super.users"] == "User:admin"
    running = Settings().stack_dir.resolve() / "kafka" / "server.properties"
    if running.exists():
        assert security_view(broker(running)) == security_view(compose)


def test_kafka_is_a_single_node_kraft_broker_and_controller() -> None:
    props = broker()
    assert {role.strip() for role in props["process.roles"].split(",")} == {"broker", "controller"}
    declared = listeners(props["listeners"])
    protocols = dict(item.split(":", 1) for item in props["listener.security.protocol.map"].split(","))
    assert set(declared) <= set(protocols), "every listener needs a security protocol"

    controller = props["controller.listener.names"]
    assert controller in declared
    assert props["inter.broker.listener.name"] in declared
    assert props["inter.broker.listener.name"] != controller

    # The one voter is this node, reached on the controller listener.
    voter_id, _, voter_address = props["controller.quorum.voters"].partition("@")
    assert voter_id == props["node.id"]
    assert int(voter_address.rsplit(":", 1)[1]) == declared[controller][1]

    # One broker: internal topics cannot have more than one replica.
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"


def test_kafka_advertises_an_internal_and_a_host_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    props = broker()
    declared = listeners(props["listeners"])
    advertised = listeners(props["advertised.listeners"])
    assert set(advertised) <= set(declared)
    assert props["controller.listener.names"] not in advertised
    for name, (_host, port) in advertised.items():
        assert declared[name][1] == port, f"listener {name} is advertised on another port than it binds"

    addresses = set(advertised.values())
    assert ("localhost", 9092) in addresses, "the host reaches Kafka on localhost:9092"
    assert 9092 in published_container_ports(kafka)
    kafka_names = {"kafka", kafka.get("hostname")}
    assert any(host in kafka_names for host, _port in addresses), "other containers need an internal listener"


def test_the_entrypoint_formats_with_every_principal_and_each_ces_service_logs_in_as_its_own(
    services: dict[str, dict[str, Any]],
) -> None:
    from cesdev.stack.secrets import KAFKA_USERS

    script = (KAFKA_DIR / "kafka-sasl.sh").read_text(encoding="utf-8")
    kafka_env = environment(services["kafka"])
    added = {}
    for user, variable in re.findall(r"SCRAM-SHA-512=\[name=([\w-]+),password=\$(\w+)\]", script):
        added[user] = kafka_env[variable]
    assert set(added) == set(KAFKA_USERS)
    expected = {"worker": "ces-worker", "gateway": "ces-gateway", "kafka-setup": "admin"}
    for name, user in expected.items():
        env = environment(services[name])
        assert (env["CES_KAFKA_USERNAME"], env["CES_KAFKA_PASSWORD"]) == (user, added[user]), name
        assert (
            env["CES_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
            and env["CES_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        )
    for name in ("migrate", "provider-sim"):  # no Kafka business, no Kafka credential
        assert "CES_KAFKA_PASSWORD" not in environment(services[name])


def test_the_worker_and_the_gateway_share_the_signing_key_and_nobody_else_has_it(
    services: dict[str, dict[str, Any]],
) -> None:
    keys = {name: environment(s).get("CES_REQUEST_SIGNING_KEY") for name, s in services.items()}
    assert keys["worker"] and keys["worker"] == keys["gateway"]
    assert {name for name, key in keys.items() if key} == {"worker", "gateway"}


def test_kafka_setup_grants_the_local_stacks_acls(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cesdev kafka-setup` (compose's setup step) creates the topics and calls the same `grant_ces` as the
    local stack, for the environment's prefix and app id, as the environment's (admin) principal."""
    import asyncio

    from cesdev import cli
    from cesdev.stack import acls

    calls: list[tuple[str, str, str]] = []

    async def grant(connection: Any, *, prefix: str, app_id: str) -> None:
        calls.append((connection.username, prefix, app_id))

    async def topics(*args: Any, **kwargs: Any) -> list[str]:
        return []

    monkeypatch.setattr(acls, "grant_ces", grant)
    monkeypatch.setattr("ces.adapters.kafka.admin.ensure_topics", topics)
    settings = Settings(kafka_username="admin", topic_prefix="p-", app_id="a", stack_dir=Path("/nonexistent"))
    args = cli.build_parser().parse_args(["kafka-setup"])
    assert args.func is cli.cmd_kafka_setup
    assert args.func(args, settings) == 0
    assert calls == [("admin", "p-", "a")]
    assert not asyncio.iscoroutinefunction(args.func)


def test_the_entrypoint_formats_with_scram_users_and_starts_the_substituted_configuration(tmp_path: Path) -> None:
    """Run kafka-sasl.sh with Kafka's tools stubbed: it refuses a missing or odd password, formats once with
    the four SCRAM users, and starts the broker on the generated configuration with the admin password in."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX shell")
    bin_dir, etc = tmp_path / "opt" / "kafka" / "bin", tmp_path / "etc" / "ces"
    bin_dir.mkdir(parents=True)
    etc.mkdir(parents=True)
    calls = tmp_path / "calls"
    for tool in ("kafka-storage.sh", "kafka-server-start.sh"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        stub.chmod(0o755)
    (etc / "server.properties").write_text((KAFKA_DIR / "server.properties").read_text())
    script = (
        (KAFKA_DIR / "kafka-sasl.sh").read_text().replace("/tmp/", f"{tmp_path}/run/")
    )  # first: tmp_path is in /tmp
    script = script.replace("/opt/kafka", str(tmp_path / "opt" / "kafka")).replace("/etc/ces", str(etc))
    (tmp_path / "run").mkdir()
    (tmp_path / "entry.sh").write_text(script)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CLUSTER_ID": "c1",
        "KAFKA_ADMIN_PASSWORD": "adm-pw_1",
        "KAFKA_WORKER_PASSWORD": "wrk",
        "KAFKA_GATEWAY_PASSWORD": "gw",
        "KAFKA_PRODUCER_PASSWORD": "pr",
    }
    odd = subprocess.run(
        [sh, str(tmp_path / "entry.sh")], env={**env, "KAFKA_WORKER_PASSWORD": 'a"b'}, capture_output=True, text=True
    )
    assert odd.returncode != 0 and "KAFKA_WORKER_PASSWORD" in odd.stderr and not calls.exists()
    done = subprocess.run([sh, str(tmp_path / "entry.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    storage, start = calls.read_text().splitlines()
    for user, password in (("admin", "adm-pw_1"), ("ces-worker", "wrk"), ("ces-gateway", "gw"), ("ces-producer", "pr")):
        assert f"SCRAM-SHA-512=[name={user},password={password}]" in storage
    assert start == f"kafka-server-start.sh {tmp_path}/run/server.properties"
    rendered = broker(tmp_path / "run" / "server.properties")
    assert 'password="adm-pw_1"' in rendered["listener.name.external.scram-sha-512.sasl.jaas.config"]
    assert "@KAFKA_ADMIN_PASSWORD@" not in (tmp_path / "run" / "server.properties").read_text()
    assert stat.S_IMODE((tmp_path / "run" / "server.properties").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["worker", "gateway", "kafka-setup"])
def test_ces_service_bootstraps_at_a_declared_kafka_listener(services: dict[str, dict[str, Any]], name: str) -> None:
    kafka = services["kafka"]
    props = broker()
    declared = listeners(props["listeners"])
    declared_ports = {port for _host, port in declared.values()}
    controller_port = declared[props["controller.listener.names"]][1]
    advertised = set(listeners(props["advertised.listeners"]).values())
    kafka_names = {"kafka", kafka.get("hostname")}

    bootstrap = environment(services[name])["CES_KAFKA_BOOTSTRAP"]
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        assert host in kafka_names, f"{name}: {server} is not the kafka service"
        assert int(port) in declared_ports, f"{name}: kafka does not listen on {port}"
        assert int(port) != controller_port, f"{name}: {server} is the controller listener"
        assert (host, int(port)) in advertised, f"{name}: {server} is not an advertised listener"


@pytest.mark.parametrize("name", sorted(CES_COMMANDS))
def test_ces_service_reaches_postgres_redis_and_the_provider(services: dict[str, dict[str, Any]], name: str) -> None:
    env = environment(services[name])
    postgres = environment(services["postgres"])

    db = urlsplit(env["CES_DATABASE_URL"])
    assert db.scheme == "postgresql+psycopg2"
    assert (db.hostname, db.port or 5432) == ("postgres", 5432)
    # The application role, never the superuser; its password comes from the same variable as the role's.
    assert db.username == "ces_app" and db.username != postgres["POSTGRES_USER"]
    assert db.password is None and env["CES_DATABASE_PASSWORD"] == postgres["CES_APP_PASSWORD"]
    assert db.path.lstrip("/") == postgres["POSTGRES_DB"]
    if name == "migrate":  # the one service with the owner role
        owner = urlsplit(env["CES_MIGRATION_DATABASE_URL"])
        assert owner.username == "ces_owner" and (owner.hostname, owner.path) == (db.hostname, db.path)
        assert env["CES_MIGRATION_DATABASE_PASSWORD"] == postgres["CES_OWNER_PASSWORD"]
    else:
        assert "CES_MIGRATION_DATABASE_PASSWORD" not in env

    cache = urlsplit(env["CES_REDIS_URL"])
    assert (cache.scheme, cache.hostname, cache.port or 6379) == ("redis", "redis", 6379)
    assert cache.username == "ces" and env["CES_REDIS_PASSWORD"]

    provider = urlsplit(env["CES_PROVIDER_URL"])
    assert provider.hostname in services
    assert provider.port in published_container_ports(services[provider.hostname])
    assert env["CES_GATEWAY_HOST"] == "0.0.0.0"


def test_published_ports_bind_to_loopback_unless_told_otherwise(services: dict[str, dict[str, Any]]) -> None:
    published = [(name, port) for name, service in services.items() for port in service.get("ports") or []]
    assert published
    for name, port in published:
        assert isinstance(port, str) and port.startswith("${CES_BIND:-127.0.0.1}:"), (name, port)


def test_postgres_creates_the_owner_and_application_roles(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    mounts = [str(volume) for volume in postgres.get("volumes") or []]
    script = next(m.split(":")[0] for m in mounts if "/docker-entrypoint-initdb.d/" in m)
    sql = (ROOT / script).read_text()
    assert "CREATE ROLE ces_owner LOGIN NOSUPERUSER" in sql and "CREATE ROLE ces_app LOGIN NOSUPERUSER" in sql
    assert "ALTER DATABASE ces OWNER TO ces_owner" in sql
    assert "scram-sha-256" in environment(postgres)["POSTGRES_INITDB_ARGS"]


@pytest.mark.parametrize(("name", "args"), sorted(CES_COMMANDS.items()))
def test_ces_service_runs_its_subcommand_from_the_project_image(
    services: dict[str, dict[str, Any]], name: str, args: list[str]
) -> None:
    service = services[name]
    command = service.get("command")
    assert (command_words(command) if isinstance(command, str) else command) == args
    if name in DEV_ENTRYPOINTS:
        assert service.get("entrypoint") == DEV_ENTRYPOINTS[name]
    else:
        assert "entrypoint" not in service, "the image's `ces` entrypoint must stay in place"

    build = service.get("build")
    assert build, f"{name} must build the project's image"
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).resolve() == DOCKERFILE


@pytest.mark.parametrize(("name", "port"), [("gateway", 8080), ("provider-sim", 8090)])
def test_http_services_publish_their_port(services: dict[str, dict[str, Any]], name: str, port: int) -> None:
    assert port in published_container_ports(services[name])


# ---------------------------------------------------------------------------------------------- image


def test_dockerfile_installs_the_package_and_runs_ces_as_non_root() -> None:
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()
    bases = [args for keyword, args in instructions if keyword == "FROM"]
    assert bases, "no FROM"
    assert bases[-1].split()[0] == "python:3.11-slim"

    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip install ." in runs
    copied = {args.split()[0] for keyword, args in instructions if keyword == "COPY"}
    assert {"ces", "cesdev"} <= copied, "the image installs the runtime and the `cesdev` command (the simulator)"

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}

    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    cmds = [args for keyword, args in instructions if keyword == "CMD"]
    runs_first = command_words(entrypoints[-1]) if entrypoints else command_words(cmds[-1]) if cmds else []
    assert runs_first[:1] == ["ces"]


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".stack", ".git"} <= patterns
    assert not {"ces", "pyproject.toml"} & patterns, "the build needs the package and pyproject.toml"
