"""Nomad's HTTP API through python-nomad, with Nomad's failures translated at this one edge.

python-nomad is synchronous: callers run these methods in worker threads (``NomadBackend._run``). Every
connection (these calls and the exec websockets) presents the same ACL token and, on a cluster with mTLS,
trusts only the cluster's CA and shows agenthost's client certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import requests
import requests.exceptions
from nomad.api import exceptions as nomad_exc
from nomad.api.base import Requester

from ...errors import AgentHostError, BackendUnavailable, Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from ...settings_nomad import NomadSettings

__all__ = ["Access", "NomadApi", "NomadTls", "nomad_errors"]


_ENFORCE_INDEX = "Enforcing job modify index"


def _message(exc: nomad_exc.BaseNomadException) -> str:
    resp = exc.nomad_resp
    if isinstance(resp, requests.Response):
        return (resp.text or resp.reason or str(resp.status_code)).strip()[:1000]
    return str(resp)[:1000]


@contextmanager
def nomad_errors(what: str) -> Iterator[None]:
    """Translate python-nomad and transport failures into the agenthost error tree."""
    try:
        yield
    except nomad_exc.URLNotFoundNomadException as exc:
        raise NotFound(f"{what}: {_message(exc)}") from exc
    except nomad_exc.BadRequestNomadException as exc:
        raise InvalidInput(f"{what}: Nomad refused it: {_message(exc)}") from exc
    except nomad_exc.URLNotAuthorizedNomadException as exc:
        raise AgentHostError(
            f"{what}: Nomad denied the request ({_message(exc)})",
            "the operator's NOMAD_TOKEN lacks a permission agenthost needs (see nomad/README.md)",
        ) from exc
    except nomad_exc.VariableConflict as exc:
        raise Conflict(f"{what}: changed concurrently ({_message(exc)})", "retry") from exc
    except requests.exceptions.JSONDecodeError as exc:
        # What an endpoint this Nomad version lacks can answer (an empty 200), not a transport failure.
        raise AgentHostError(
            f"{what}: Nomad's answer is not JSON ({exc})",
            "this Nomad version may lack the endpoint: platform_status shows the version agenthost talks to",
        ) from exc
    except (nomad_exc.TimeoutNomadException, requests.exceptions.RequestException) as exc:
        raise BackendUnavailable(f"{what}: Nomad unreachable ({exc})") from exc
    except nomad_exc.BaseNomadException as exc:
        resp = exc.nomad_resp
        if not isinstance(resp, requests.Response):
            raise BackendUnavailable(f"{what}: Nomad unreachable ({resp})") from exc
        text = _message(exc)
        if resp.status_code in (500, 503) and ("No cluster leader" in text or "no leader" in text.lower()):
            raise BackendUnavailable(f"{what}: the Nomad cluster has no leader") from exc
        if _ENFORCE_INDEX in text:  # a check-and-set register of a job that changed since it was read
            raise Conflict(f"{what}: changed concurrently ({text})", "retry") from exc
        raise AgentHostError(f"{what}: Nomad error {resp.status_code}: {text}") from exc


@dataclass(frozen=True)
class NomadTls:
    """The CA that signed the Nomad servers' certificates, and the client certificate (and key) agenthost
    presents to a cluster whose HTTP API requires one (``tls { verify_https_client = true }``)."""

    cacert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cacert or self.client_cert or self.client_key)

    def check(self, address: str) -> None:
        """Raises: InvalidInput when the files do not fit together or with the address, or are missing."""
        if (self.client_cert is None) != (self.client_key is None):
            raise InvalidInput(
                "AGENTHOST_NOMAD_CLIENT_CERT and AGENTHOST_NOMAD_CLIENT_KEY go together",
                "set both (the client certificate and its key), or neither",
            )
        if self.enabled and not address.startswith("https://"):
            raise InvalidInput(
                f"Nomad TLS files are set but the Nomad address is {address!r}",
                "use the https:// address of the Nomad API (AGENTHOST_NOMAD_ADDR)",
            )
        for path in (self.cacert, self.client_cert, self.client_key):
            if path is not None and not path.is_file():
                raise InvalidInput(f"Nomad TLS file {path} does not exist", "fix AGENTHOST_NOMAD_CACERT/CLIENT_*")

    def context(self) -> ssl.SSLContext:
        """An SSL context trusting the CA (the default CAs without one) and holding the client certificate.

        Raises: InvalidInput when a file is not PEM or the key does not match the certificate."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.cacert) if self.cacert else None)
            if self.client_cert and self.client_key:
                ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        except (ssl.SSLError, OSError) as exc:
            raise InvalidInput(f"Nomad TLS files unusable: {exc}", "check the CA, certificate and key") from exc
        return ctx


@dataclass(frozen=True)
class Access:
    """What a websocket to Nomad presents: the ACL token and the TLS context (True: the default CA bundle)."""

    token: str | None = None
    verify: ssl.SSLContext | bool = True

    def client(self, timeout: float = 30) -> httpx2.AsyncClient:
        headers = {"X-Nomad-Token": self.token} if self.token else {}
        return httpx2.AsyncClient(headers=headers, verify=self.verify, timeout=timeout)


class _Requester(Requester):  # type: ignore[misc]
    def _endpoint_builder(self, *args: str) -> str:
        return f"{self.version}/" + "/".join(a for a in args if a)


class NomadApi:
    """A small typed surface over python-nomad's requester: ``get("job", job_id)`` → ``GET /v1/job/<id>``."""

    def __init__(
        self,
        address: str,
        token: str | None,
        namespace: str,
        region: str | None,
        timeout_s: int = 30,
        tls: NomadTls | None = None,
    ):
        """Raises: InvalidInput when ``tls`` is unusable (see ``NomadTls``)."""
        self.address = address.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.region = region
        tls = tls or NomadTls()
        tls.check(self.address)
        self.access = Access(token, tls.context() if tls.enabled else True)
        self._session = requests.Session()
        self._req = _Requester(
            address=self.address,
            token=token,
            namespace=namespace,
            region=region,
            timeout=timeout_s,
            session=self._session,
            # python-nomad's default is verify=False: always verify, against the cluster's CA when given.
            verify=str(tls.cacert) if tls.cacert else True,
            cert=(str(tls.client_cert), str(tls.client_key)) if tls.client_cert and tls.client_key else (),
        )

    @classmethod
    def from_settings(cls, settings: NomadSettings) -> NomadApi:
        """Raises: InvalidInput when the TLS settings are unusable."""
        tls = NomadTls(settings.nomad_cacert, settings.nomad_client_cert, settings.nomad_client_key)
        return cls(settings.nomad_addr, settings.nomad_token, settings.nomad_namespace, settings.nomad_region, tls=tls)

    def _call(
        self,
        method: str,
        parts: tuple[str, ...],
        params: dict[str, Any] | None,
        body: Any,
        stream: bool = False,
        timeout: float | None = None,
    ) -> requests.Response:
        params = dict(params or {})
        if self.namespace and "namespace" not in params:
            params["namespace"] = self.namespace
        kwargs: dict[str, Any] = {"method": method, "params": params, "json": body, "stream": stream}
        if timeout is not None:
            kwargs["timeout"] = timeout
        with nomad_errors(f"{method.upper()} /v1/{'/'.join(parts)}"):
            response: requests.Response = self._req.request(*parts, **kwargs)
        return response

    def get(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        response = self._call("get", parts, params, None)
        with nomad_errors(f"GET /v1/{'/'.join(parts)}"):
            return response.json()

    def get_blocking(
        self, *parts: str, index: int, wait_s: float, params: dict[str, Any] | None = None
    ) -> tuple[Any, int]:
        """A blocking query: Nomad answers once the object's index passes ``index``, or after ``wait_s``.

        Returns the JSON and the ``X-Nomad-Index`` to pass as ``index`` next time."""
        query = {**(params or {}), "index": str(index), "wait": f"{wait_s:g}s"}
        response = self._call("get", parts, query, None, timeout=wait_s + 15)
        with nomad_errors(f"GET /v1/{'/'.join(parts)}"):
            return response.json(), int(response.headers.get("X-Nomad-Index") or 0)

    def get_text(self, *parts: str, params: dict[str, Any] | None = None) -> bytes:
        return self._call("get", parts, params, None).content

    def stream(self, *parts: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self._call("get", parts, params, None, stream=True, timeout=3600)

    def post(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._call("post", parts, params, body)
        return response.json() if response.content else None

    def put(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._call("put", parts, params, body)
        return response.json() if response.content else None

    def delete(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        response = self._call("delete", parts, params, None)
        return response.json() if response.content else None

    def websocket_url(self, *parts: str, params: dict[str, str]) -> str:
        from urllib.parse import urlencode

        query = {**params, "namespace": self.namespace}
        if self.region:
            query["region"] = self.region
        base = self.address.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/v1/{'/'.join(parts)}?{urlencode(query)}"

    def close(self) -> None:
        self._session.close()
