"""Destructive tools ask first, and ask for real: the target must exist before anyone is asked, the
question names what is lost, a client that can ask its user (elicitation) is always asked (the agent's
own confirm=true does not stand in for the user there), and a client that cannot is told to ask and
call again with confirm=true."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import ElicitRequestParams, ElicitResult

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


class User:
    """Answers elicitation requests as the human behind the client would, and remembers each question."""

    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        if self.accept:
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")


async def refused(client: Any, tool: str, args: dict[str, Any]) -> ToolFailed:
    with pytest.raises(ToolFailed) as err:
        await call(client, tool, args)
    return err.value


def web(hello_image: str, name: str = "web") -> dict[str, Any]:
    volumes = [{"name": "data", "path": "/data"}, {"name": "cache", "path": "/cache"}]
    return {"name": name, "image": hello_image, "port": 8000, "volumes": volumes, "wait": False}


async def names(client: Any) -> list[str]:
    return [s["name"] for s in (await call(client, "list_services"))["services"]]


async def test_delete_service_asks_the_user_naming_its_volumes(
    agenthost: AgentHost, hello_image: str, transport: str
) -> None:
    user = User(accept=False)
    async with connect(agenthost, agenthost.tenant(f"cf-del-{transport}"), transport, elicitation_callback=user) as c:
        await call(c, "deploy_service", web(hello_image))
        assert (await refused(c, "delete_service", {"service": "web"})).code == "confirmation_required"
        assert len(user.asked) == 1
        question = user.asked[0]
        assert "'web'" in question and "data" in question and "cache" in question, question
        assert await names(c) == ["web"]

        kept = await refused(c, "delete_service", {"service": "web", "keep_volumes": True})
        assert kept.code == "confirmation_required"
        assert "kept" in user.asked[1] and "data" in user.asked[1], user.asked[1]

        user.accept = True
        deleted = await call(c, "delete_service", {"service": "web"})
        assert {"volume data", "volume cache"} <= set(deleted["removed"]), deleted
        assert len(user.asked) == 3
        assert await names(c) == []


async def test_attack_agent_cannot_confirm_for_a_user_who_can_be_asked(
    agenthost: AgentHost, hello_image: str, transport: str
) -> None:
    """A prompt-injected agent passes confirm=true itself; the client can ask its user, so the user is asked."""
    user = User(accept=False)
    async with connect(agenthost, agenthost.tenant(f"cf-self-{transport}"), transport, elicitation_callback=user) as c:
        await call(c, "deploy_service", web(hello_image))
        err = await refused(c, "delete_service", {"service": "web", "confirm": True})
        assert err.code == "confirmation_required"
        assert "declined" in err.message
        assert len(user.asked) == 1 and "'web'" in user.asked[0]
        assert await names(c) == ["web"]

        key_id = (await call(c, "create_api_key", {"name": "ci"}))["info"]["id"]
        assert (await refused(c, "revoke_api_key", {"key_id": key_id, "confirm": True})).code == (
            "confirmation_required"
        )
        assert len(user.asked) == 2
        keys = {k["id"]: k for k in (await call(c, "list_api_keys"))["keys"]}
        assert keys[key_id]["revoked"] is False

        user.accept = True
        await call(c, "delete_service", {"service": "web"})
        await call(c, "revoke_api_key", {"key_id": key_id})
        assert await names(c) == []


async def test_without_elicitation_the_confirm_flag_decides(agenthost: AgentHost, hello_image: str) -> None:
    async with connect(agenthost, agenthost.tenant("cf-flag"), "stdio") as c:
        await call(c, "deploy_service", web(hello_image))
        err = await refused(c, "delete_service", {"service": "web"})
        assert err.code == "confirmation_required"
        assert "'web'" in err.message and "data" in err.message and "cache" in err.message, err.message
        assert await names(c) == ["web"]
        await call(c, "delete_service", {"service": "web", "confirm": True})
        assert await names(c) == []

        key_id = (await call(c, "create_api_key", {"name": "ci"}))["info"]["id"]
        err = await refused(c, "revoke_api_key", {"key_id": key_id})
        assert err.code == "confirmation_required"
        assert key_id in err.message and "'ci'" in err.message, err.message
        keys = {k["id"]: k for k in (await call(c, "list_api_keys"))["keys"]}
        assert keys[key_id]["revoked"] is False
        revoked = await call(c, "revoke_api_key", {"key_id": key_id, "confirm": True})
        assert revoked["revoked"] is True
        # Revoking it again changes nothing, so there is nothing to confirm.
        assert (await call(c, "revoke_api_key", {"key_id": key_id}))["revoked"] is True


async def test_missing_target_is_not_found_without_asking(agenthost: AgentHost, transport: str) -> None:
    user = User(accept=True)
    async with connect(agenthost, agenthost.tenant(f"cf-none-{transport}"), transport, elicitation_callback=user) as c:
        for tool, args in (
            ("delete_service", {"service": "nope"}),
            ("delete_database", {"database": "nope"}),
            ("delete_sandbox", {"sandbox": "nope"}),
            ("delete_backup", {"backup_id": "bk_nope"}),
            ("restore_backup", {"backup_id": "bk_nope"}),
            ("revoke_api_key", {"key_id": "nope"}),
        ):
            err = await refused(c, tool, args)
            assert err.code == "not_found", (tool, str(err))
    assert user.asked == []


async def test_restore_over_data_asks_and_restore_into_a_new_name_does_not(agenthost: AgentHost) -> None:
    user = User(accept=False)
    python = agenthost.settings.image_python
    async with connect(agenthost, agenthost.tenant("cf-restore"), "stdio", elicitation_callback=user) as c:
        files = {"image": python, "command": ["sleep", "infinity"]}
        await call(c, "deploy_service", {"name": "files", "volumes": [{"name": "data", "path": "/app"}], **files})
        wrote = await call(c, "exec", {"service": "files", "command": ["sh", "-c", "echo kept > /app/note"]})
        assert wrote["exit_code"] == 0, wrote
        backup = await call(c, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup.get("error")

        assert (await refused(c, "restore_backup", {"backup_id": backup["id"]})).code == "confirmation_required"
        assert len(user.asked) == 1
        question = user.asked[0]
        assert backup["id"] in question and "'data'" in question and "REPLACED" in question, question
        assert "'files'" in question, question  # the service that stops meanwhile
        assert (await call(c, "list_backups", {"volume": "data"}))["backups"][0]["last_restore"] is None

        copy = await call(c, "restore_backup", {"backup_id": backup["id"], "name": "data-copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]
        assert len(user.asked) == 1

        user.accept = True
        await call(c, "deploy_service", {"name": "reader", "volumes": [{"name": "data-copy", "path": "/app"}], **files})
        for name in ("files", "reader"):
            await call(c, "delete_service", {"service": name})
        assert await names(c) == []
