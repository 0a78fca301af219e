"""The platform's Postgres image: a fresh volume gets the cluster initialised when the image was built, and its
first start only sets the superuser's password; every other first start still runs initdb; a first start cut
short, or one that fails, never leaves a cluster without its password."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from orchestrator.databases.engines import PGDATA
from orchestrator.images.databases import PG_DATA, PG_SPARE_DB, PG_TEMPLATE_MARK
from orchestrator.settings import Settings

from .harness import wait_for

pytestmark = [pytest.mark.e2e]

MOUNT = PGDATA.rsplit("/", 1)[0]
MARKED = f"if [ -e {PGDATA}/{PG_TEMPLATE_MARK} ]; then echo marked; else echo unmarked; fi"
# Quotes, a backslash and a semicolon, which SQL must not see as such; x7Q marks it in a log.
PASSWORD = 'x7Q it\'s a \\ "quoted"; one'


@dataclass
class Pg:
    client: docker.DockerClient
    image: str
    volume: str

    def run(self, env: dict[str, str], **kwargs: object) -> Container:
        return self.client.containers.run(
            self.image,
            ["postgres", "-c", "unix_socket_directories=/tmp"],
            environment={"PGDATA": PGDATA, **env},
            volumes={self.volume: {"bind": MOUNT, "mode": "rw"}},
            runtime="runsc",
            detach=True,
            **kwargs,
        )

    def sh(self, script: str) -> str:
        """A script in a throwaway container on the volume, as the image's user; its output."""
        out: bytes = self.client.containers.run(
            self.image, ["sh", "-c", script], entrypoint=[], volumes={self.volume: {"bind": MOUNT}}, remove=True
        )
        return out.decode()


def ready(container: Container) -> Container:
    """Wait until the server accepts connections; fail, with its log, if the container ends first."""

    def up() -> bool:
        container.reload()
        log = container.logs().decode()
        assert container.status == "running", f"the container ended: {log}"
        return "ready to accept connections" in log

    wait_for(up, timeout=120, what="postgres to accept connections")
    return container


def psql(container: Container, user: str, password: str, db: str, sql: str) -> tuple[int, str]:
    code, out = container.exec_run(
        ["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-XAtc", sql], environment={"PGPASSWORD": password}
    )
    return code, out.decode()


def system_id(text: str) -> str:
    return next(line.split(":")[1].strip() for line in text.splitlines() if "system identifier" in line)


@pytest.fixture
def pg(docker_client: docker.DockerClient, platform_images: Settings) -> Iterator[Pg]:
    name = f"ah-test-pgimage-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(name)
    pg = Pg(docker_client, platform_images.image_postgres, name)
    yield pg
    for c in docker_client.containers.list(all=True, filters={"volume": name}):
        c.remove(force=True)
    docker_client.volumes.get(name).remove(force=True)


@pytest.fixture(scope="module")
def template_id(docker_client: docker.DockerClient, platform_images: Settings) -> str:
    out = docker_client.containers.run(
        platform_images.image_postgres, ["pg_controldata", PG_DATA], entrypoint=[], remove=True
    )
    return system_id(out.decode())


def test_a_fresh_volume_starts_from_the_template_with_the_password_set(pg: Pg, template_id: str) -> None:
    c = ready(pg.run({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": "app"}))
    assert psql(c, "postgres", PASSWORD, "app", "select current_user, current_database()") == (0, "postgres|app\n")
    spare = f"select datname from pg_database where datname = '{PG_SPARE_DB}'"
    assert psql(c, "postgres", PASSWORD, "app", spare) == (0, f"{PG_SPARE_DB}\n")  # for the tenant's role setup
    code, out = psql(c, "postgres", "wrong", "app", "select 1")
    assert code != 0 and "password authentication failed" in out
    c.remove(force=True)
    listing = pg.sh(f"{MARKED}; pg_controldata {PGDATA}")
    assert "unmarked" in listing
    assert system_id(listing) == template_id  # the template's cluster, not one initdb made


def test_a_first_start_cut_short_after_its_database_was_made_starts_again(pg: Pg, template_id: str) -> None:
    # The template copied into the volume and the database made, but the start ended before the mark went.
    pg.sh(f"printf 'CREATE DATABASE app;\\n\\n' | postgres --single -D {PGDATA} -j postgres >/dev/null")
    assert pg.sh(MARKED) == "marked\n"
    c = ready(pg.run({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": "app"}))
    assert psql(c, "postgres", PASSWORD, "app", "select current_database()") == (0, "app\n")


def test_attack_a_first_start_that_fails_keeps_the_superuser_password_out_of_the_log_and_can_run_again(
    pg: Pg,
) -> None:
    # A database that does not start answers create_database with its last log lines: its tenant reads them.
    bad = pg.run({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": 'no"such'})
    assert bad.wait(timeout=120)["StatusCode"] == 1
    log = bad.logs().decode()
    assert 'ERROR:  unterminated quoted identifier at or near ""' in log, log
    assert "x7Q" not in log and "ALTER ROLE" not in log, log
    bad.remove()
    assert pg.sh(MARKED) == "marked\n"  # not initialised: the next start does it all again
    c = ready(pg.run({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": "app"}))
    assert psql(c, "postgres", PASSWORD, "app", "select 1") == (0, "1\n")


def test_a_password_of_two_lines_is_refused_before_anything_is_done(pg: Pg) -> None:
    bad = pg.run({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "two\nlines"})
    assert bad.wait(timeout=120)["StatusCode"] == 1
    assert "POSTGRES_PASSWORD holds a newline: give a password of one line" in bad.logs().decode()
    bad.remove()
    assert pg.sh(MARKED) == "marked\n"


@pytest.mark.parametrize(
    ("user", "initdb_args"),
    [
        ("owner", ""),  # another superuser than the template's
        ("postgres", "--data-checksums"),  # initdb's own options
    ],
    ids=["other-superuser", "initdb-args"],
)
def test_any_other_first_start_gets_a_cluster_of_its_own_from_initdb(
    pg: Pg, template_id: str, user: str, initdb_args: str
) -> None:
    password = PASSWORD
    env = {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": "app"}
    c = ready(pg.run({**env, "POSTGRES_INITDB_ARGS": initdb_args} if initdb_args else env))
    assert psql(c, user, password, "app", "select current_user") == (0, f"{user}\n")
    roles = psql(c, user, password, "app", "select string_agg(rolname, ',') from pg_roles where rolsuper")
    assert roles == (0, f"{user}\n")  # with another superuser, the template's passwordless postgres is gone
    if initdb_args:
        assert psql(c, user, password, "app", "show data_checksums") == (0, "on\n")
    c.remove(force=True)
    listing = pg.sh(f"{MARKED}; pg_controldata {PGDATA}")
    assert "unmarked" in listing and system_id(listing) != template_id
