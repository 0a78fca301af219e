"""Backups on Nomad: restic runs as a batch job on the node that holds the data, to the tenant's S3 repository
(moto on 127.0.0.1, which the dev agent's nodes reach on the host's network), its credentials from the job's
Nomad Variable; restores into the same database and into a new one placed wherever the scheduler finds room."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CONFORMANCE_ENV
from .harness import VENV_BIN, AgentHost, call, connect, free_port, wait_for
from .nomad_agent import NOMAD_DEV_SIZES, nomad_get, purge_tenants
from .test_backups import S3_BUCKET, S3_KEY, S3_SECRET, _tcp_open

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NOTES_SUM = "psql \"$DATABASE_URL\" -qAt -c \"SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM notes\""
FILES_SUM = "cd /app && find . -type f | sort | xargs sha256sum"


@pytest.fixture(scope="module")
def nomad_s3_host(nomad_agent: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    port = free_port()
    moto = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-nomad-s3")),
        env={
            **CONFORMANCE_ENV,
            **NOMAD_DEV_SIZES,
            "AGENTHOST_BACKEND": "nomad",
            "AGENTHOST_NOMAD_ADDR": nomad_agent,
            "AGENTHOST_BACKUP_TARGET": "s3",
            "AGENTHOST_BACKUP_S3_ENDPOINT": f"http://127.0.0.1:{port}",
            "AGENTHOST_BACKUP_S3_BUCKET": S3_BUCKET,
            "AGENTHOST_BACKUP_S3_ACCESS_KEY": S3_KEY,
            "AGENTHOST_BACKUP_S3_SECRET_KEY": S3_SECRET,
        },
    )
    try:
        wait_for(lambda: _tcp_open(port), 30, what="moto S3 server")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket=S3_BUCKET)
        host.init()
        yield host
    finally:
        host.stop()
        purge_tenants(host)
        moto.terminate()
        moto.wait(10)


async def _sh(client: Any, service: str, script: str) -> str:
    out = await call(client, "exec", {"service": service, "command": script, "timeout_s": 300})
    assert out["exit_code"] == 0, out
    text: str = out["stdout"]
    return text


async def test_postgres_backs_up_on_its_node_and_restores_over_itself_and_into_a_new_database(
    nomad_s3_host: AgentHost,
) -> None:
    host = nomad_s3_host
    key = host.tenant("nbk-pg")
    async with connect(host, key, "stdio") as client:
        await call(client, "create_database", {"name": "pg", "engine": "postgres"})
        await call(
            client,
            "deploy_service",
            {"name": "app", "image": host.settings.image_postgres, "command": ["sleep", "infinity"]},
        )
        await call(client, "link_database", {"database": "pg", "service": "app"})
        await _sh(
            client,
            "app",
            'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q -c "CREATE TABLE notes (id int PRIMARY KEY, body text)"'
            ' -c "INSERT INTO notes SELECT g, md5(random()::text) FROM generate_series(1, 2000) g"',
        )
        before = await _sh(client, "app", NOTES_SUM)

        backup = await call(client, "create_backup", {"database": "pg"})
        assert backup["status"] == "complete" and backup["target"] == "s3", backup
        assert backup["size_bytes"] > 0

        await _sh(client, "app", 'psql "$DATABASE_URL" -c "DROP TABLE notes"')
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        assert await _sh(client, "app", NOTES_SUM) == before

        copy = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "pg-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]["error"]
        await call(client, "link_database", {"database": "pg-copy", "service": "app", "env_var": "COPY_URL"})
        assert await _sh(client, "app", NOTES_SUM.replace("DATABASE_URL", "COPY_URL")) == before

        await call(client, "delete_backup", {"backup_id": backup["id"], "confirm": True})
        for name in ("pg", "pg-copy"):
            await call(client, "delete_database", {"database": name, "confirm": True})
        await call(client, "delete_service", {"service": "app", "confirm": True})
    # Every backup and restore job is gone, with its Variable.
    ours = (f"ah-{backup['id']}-", f"ah-{restored['last_restore']['id']}-", f"ah-{copy['last_restore']['id']}-")
    assert not [j["ID"] for j in nomad_get("jobs") if j["ID"].startswith(ours)]
    assert not [v["Path"] for v in nomad_get("vars", prefix="nomad/jobs/ah-") if v["Path"][11:].startswith(ours)]
