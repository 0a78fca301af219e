"""Services: the use-cases (manager), what callers ask and get (requests, models), what other use-cases add
to a service (companions), updates and their rollback (update), revisions and rolling back to one
(revisions, rollback), readiness and crash reports (health,
readiness), tenants' volumes and networks (volumes, networks), and the reconciler that repairs what the
engine and the store disagree on (reconciler, repairs)."""

from .companions import ServiceAccess, ServiceEvent, ServiceLinks
from .diagnose import Diagnosis, ServiceDiagnosis
from .logs import LogQuery
from .manager import ServiceManager
from .models import (
    EnvList,
    LogOutput,
    Revision,
    RevisionList,
    RolledBack,
    Service,
    ServiceDetail,
    ServiceList,
    ServiceSummary,
)
from .networks import NetworkCollector
from .reconciler import Reconciler
from .repairs import PassFailures, still_wanted
from .requests import DeployRequest, UpdateRequest
from .revisions import RevisionLog
from .rollback import ServiceRevisions
from .volumes import Volume, VolumeList, VolumeManager, engine_volumes, volumes_held

__all__ = [
    "DeployRequest",
    "Diagnosis",
    "EnvList",
    "LogOutput",
    "LogQuery",
    "NetworkCollector",
    "PassFailures",
    "Reconciler",
    "Revision",
    "RevisionList",
    "RevisionLog",
    "RolledBack",
    "Service",
    "ServiceDetail",
    "ServiceAccess",
    "ServiceEvent",
    "ServiceLinks",
    "ServiceList",
    "ServiceManager",
    "ServiceRevisions",
    "ServiceDiagnosis",
    "ServiceSummary",
    "UpdateRequest",
    "Volume",
    "VolumeList",
    "VolumeManager",
    "engine_volumes",
    "still_wanted",
    "volumes_held",
]
