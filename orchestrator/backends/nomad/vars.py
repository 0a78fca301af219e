"""Nomad Variables: where the Nomad backend keeps secrets, workload env and its own records.

A workload's env lives in ``nomad/jobs/<job id>`` (readable by that job's tasks only), volume
metadata in ``agenthost/<instance>/volumes/<name>``. These calls are synchronous: callers run
them in worker threads (``NomadBackend._run``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from .api import NomadApi

__all__ = [
    "Items",
    "check_variable_path",
    "delete_variable",
    "get_variable",
    "put_variable",
    "read_items",
    "update_items",
]

Items = dict[str, str]
_ATTEMPTS = 5

_PATH = re.compile(r"[A-Za-z0-9_~/-]{1,128}")


def get_variable(api: NomadApi, path: str) -> dict[str, Any] | None:
    """The Variable at ``path`` with its ``Items``, or None when there is none."""
    try:
        var: dict[str, Any] = api.get("var", path)
    except NotFound:
        return None
    return var


def put_variable(api: NomadApi, path: str, items: dict[str, str], cas: int | None = None) -> Any:
    """Write ``items`` as the Variable at ``path`` (replacing it); returns Nomad's answer (``ModifyIndex``…).

    With ``cas`` the write happens only while the Variable's ModifyIndex is ``cas`` (0: while there is none).

    Raises: Conflict when ``cas`` no longer matches.
    """
    params = {"cas": str(cas)} if cas is not None else None
    return api.put("var", path, body={"Namespace": api.namespace, "Path": path, "Items": items}, params=params)


def read_items(api: NomadApi, path: str) -> tuple[Items | None, int]:
    """The Variable's items (None when there is none) and its ModifyIndex (0 then), for check-and-set."""
    var = get_variable(api, path)
    if var is None:
        return None, 0
    return dict(var.get("Items") or {}), int(var["ModifyIndex"])


def update_items(
    api: NomadApi, path: str, change: Callable[[Items | None], Items | None], what: str = "record"
) -> Items | None:
    """Apply ``change`` to the Variable's items with check-and-set; ``change`` returns None to leave them.

    Returns the items as they are after the update. Raises: Conflict when other writers keep winning.
    """
    for _ in range(_ATTEMPTS):
        items, index = read_items(api, path)
        new = change(items)
        if new is None or new == items:
            return items
        try:
            put_variable(api, path, new, cas=index)
        except Conflict:
            continue
        return new
    raise Conflict(f"the {what} {path} keeps changing", "retry")


def delete_variable(api: NomadApi, path: str) -> None:
    """Delete the Variable at ``path``; one that is already gone is fine."""
    try:
        api.delete("var", path)
    except NotFound:
        pass


def check_variable_path(path: str) -> None:
    """Refuse a path Nomad would reject or read differently.

    Raises: InvalidInput for characters outside Nomad's set, ``//`` or a leading ``/``.
    """
    if not _PATH.fullmatch(path) or "//" in path or path.startswith("/"):
        raise InvalidInput(f"invalid Nomad Variable path {path!r}", "letters, digits, '-', '_', '~' and '/' only")
