"""The one error tree of agenthost.

Every failure an agent or operator can act on is an ``AgentHostError`` with a
stable ``code`` (part of the API: tests and clients match on it), an HTTP
``status`` for REST, a ``message`` and a ``hint`` saying what to do next, and,
when waiting helps, ``retry_after_s``::

    AgentHostError                    internal (500)
    ├── InvalidInput                  invalid_input (400)
    │   ├── ConfirmationRequired      confirmation_required (409)
    │   ├── RuntimeUnavailable        runtime_unavailable (400)
    │   ├── NotSupported              not_supported (400)
    │   ├── TooLarge                  too_large (413)
    │   └── UnsafePath                unsafe_path (400)
    ├── Unauthorized                  unauthorized (401)
    ├── Forbidden                     forbidden (403)
    │   ├── ReadOnly                  read_only (403)
    │   ├── ImageNotAllowed           image_not_allowed (403)
    │   └── DomainNotVerified         domain_not_verified (403)
    ├── NotFound                      not_found (404)
    │   └── ImageNotFound             image_not_found (404)
    ├── Conflict                      conflict (409)
    │   └── InProgress                in_progress (409)
    ├── QuotaExceeded                 quota_exceeded (403)
    ├── RateLimited                   rate_limited (429)
    ├── Busy                          busy (429)
    ├── NoCapacity                    no_capacity (503)
    ├── WorkloadFailed                workload_failed (502)
    │   └── BuildFailed               build_failed (502)
    ├── IngressUnavailable            ingress_unavailable (503)
    └── BackendUnavailable            backend_unavailable (503)
        └── BackupTargetUnavailable   backup_target_unavailable (503)

Engine exceptions (docker-py, Nomad) are translated at the backend edge by one
context manager per backend and re-raised from the original.
"""

from __future__ import annotations

__all__ = [
    "AgentHostError",
    "BackendUnavailable",
    "BackupTargetUnavailable",
    "BuildFailed",
    "Busy",
    "Conflict",
    "ConfirmationRequired",
    "DomainNotVerified",
    "Forbidden",
    "ImageNotAllowed",
    "ImageNotFound",
    "InProgress",
    "IngressUnavailable",
    "InvalidInput",
    "NoCapacity",
    "NotFound",
    "NotSupported",
    "QuotaExceeded",
    "RateLimited",
    "ReadOnly",
    "RuntimeUnavailable",
    "TooLarge",
    "Unauthorized",
    "UnsafePath",
    "WorkloadFailed",
]


class AgentHostError(Exception):
    code = "internal"
    status = 500
    default_hint = "this is a platform fault: check `agenthost doctor` and the server log"
    retry_after_s: float | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict[str, str | float]:
        out: dict[str, str | float] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        return out

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} (hint: {self.hint})"


class InvalidInput(AgentHostError):
    code = "invalid_input"
    status = 400
    default_hint = "fix the argument and call again"


class ConfirmationRequired(InvalidInput):
    """409, not 400: the request is well formed, and the same request succeeds once the user agrees."""

    code = "confirmation_required"
    status = 409
    default_hint = "ask the user the question in this message; call again with confirm=true only once they agree"


class RuntimeUnavailable(InvalidInput):
    code = "runtime_unavailable"
    default_hint = "platform_status lists the runtimes this node has; pick one of them"


class NotSupported(InvalidInput):
    """The request is sound, but the platform's backend cannot do it (e.g. backups on Nomad)."""

    code = "not_supported"
    default_hint = "platform_status shows the backend; an operator can run this on the Docker backend"


class TooLarge(InvalidInput):
    """A request bigger (or more deeply nested) than the server accepts, refused before it is parsed."""

    code = "too_large"
    status = 413
    default_hint = "send less: big inputs belong on a volume, not in a request"


class UnsafePath(InvalidInput):
    """A tenant's tree holds a link or a special file where the platform expects a plain file or directory;
    the platform (root) never follows it."""

    code = "unsafe_path"
    default_hint = "remove the link or special file from the volume, then try again"


class Unauthorized(AgentHostError):
    code = "unauthorized"
    status = 401
    default_hint = "send a valid API key as 'Authorization: Bearer KEYID.SECRET'"


class Forbidden(AgentHostError):
    code = "forbidden"
    status = 403
    default_hint = "this needs an admin key"


class ReadOnly(Forbidden):
    code = "read_only"
    default_hint = "this key or server is read-only; use a key with full scope"


class ImageNotAllowed(Forbidden):
    """An image the caller may not run or build from: not the platform's, not allowed by the operator, not
    the caller's own build (or no longer the image that build made), or named by id."""

    code = "image_not_allowed"
    default_hint = "use the platform's images or your own builds (deploy them by build_id)"


class DomainNotVerified(Forbidden):
    """add_domain found no proof that the caller owns the domain: the DNS TXT record it asked for is missing
    or holds another value. The message names the record; the domain stays pending."""

    code = "domain_not_verified"
    default_hint = "publish the TXT record add_domain named, wait for DNS to serve it, then call add_domain again"


class NotFound(AgentHostError):
    code = "not_found"
    status = 404
    default_hint = "list the resources you own (list_services, list_databases, ...) and use one of those names"


class ImageNotFound(NotFound):
    code = "image_not_found"
    default_hint = "the image is not on this host: build it with build_from_git or load it onto the host first"


class Conflict(AgentHostError):
    code = "conflict"
    status = 409
    default_hint = "pick another name, or act on the existing resource"


class InProgress(Conflict):
    """The same request (one Idempotency-Key) is running now; it runs once, so this one waits its turn."""

    code = "in_progress"
    default_hint = "a request with this Idempotency-Key is still running: retry in a few seconds for its answer"


class QuotaExceeded(AgentHostError):
    """403, not 429 like the rate limit: waiting does not help, freeing something up or a larger quota does."""

    code = "quota_exceeded"
    status = 403
    default_hint = "whoami shows your quotas and usage; free something up or ask an admin to raise the quota"


class RateLimited(AgentHostError):
    code = "rate_limited"
    status = 429
    default_hint = "slow down and retry in a few seconds"

    def __init__(self, message: str, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint if hint is not None else f"retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class Busy(AgentHostError):
    """A per-tenant concurrency cap is reached: the call is refused at once, never queued."""

    code = "busy"
    status = 429

    def __init__(self, message: str, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint if hint is not None else f"retry in {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


class NoCapacity(AgentHostError):
    """No node can take the workload now: the message names what it asks for and what each node has free.

    Not a QuotaExceeded (the tenant is within its quota; the cluster is full) and not a BackendUnavailable
    (the engine answers)."""

    code = "no_capacity"
    status = 503
    default_hint = (
        "ask for less memory_mb or cpus, or free capacity (delete or stop services and sandboxes you no longer"
        " need); if the nodes are full, an operator must add capacity"
    )


class WorkloadFailed(AgentHostError):
    code = "workload_failed"
    status = 502
    default_hint = "read service_logs, fix the cause (image, command, env) and deploy again"


class BuildFailed(WorkloadFailed):
    code = "build_failed"
    default_hint = "read build_logs, fix the Dockerfile or the code, and build again"


class IngressUnavailable(AgentHostError):
    """Caddy's admin API did not answer or refused the configuration. Not a BackendUnavailable: workloads run
    on, and the reconciler's other repairs go on without the proxy."""

    code = "ingress_unavailable"
    status = 503
    default_hint = "the HTTPS proxy (Caddy) is not running: an operator must start it (`agenthost doctor` checks it)"


class BackendUnavailable(AgentHostError):
    code = "backend_unavailable"
    status = 503
    default_hint = "the container engine is unreachable: an operator must start it (platform_status shows details)"


class BackupTargetUnavailable(BackendUnavailable):
    code = "backup_target_unavailable"
    default_hint = (
        "the backup repository (local directory or S3 endpoint) cannot be reached: an operator must fix it;"
        " target='local' still works if the S3 endpoint is down"
    )
