"""The model registry's client: a typed Python API (``Registry``) and the ``registry`` command line.

Only ``requests`` is needed. See client/README.md.
"""

__version__ = "0.1.0"

from .api import Registry
from .errors import (
    BadRequest,
    ConfigError,
    Conflict,
    DigestMismatch,
    NotAuthorized,
    NotFound,
    RegistryError,
    ServerError,
    ServerUnreachable,
    TimedOut,
    UnsafePath,
    WaitFailed,
)
from .manifest import Reference
from .types import (
    ApiToken,
    ArtifactVersion,
    Automation,
    AutomationRun,
    Delivery,
    DownloadResult,
    Event,
    EventRef,
    LaunchItem,
    ManifestFile,
    ManifestReference,
    ModelVersion,
    Preview,
    WaitResult,
)

__all__ = [
    "ApiToken",
    "ArtifactVersion",
    "Automation",
    "AutomationRun",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Delivery",
    "DigestMismatch",
    "DownloadResult",
    "Event",
    "EventRef",
    "LaunchItem",
    "ManifestFile",
    "ManifestReference",
    "ModelVersion",
    "NotAuthorized",
    "NotFound",
    "Preview",
    "Reference",
    "Registry",
    "RegistryError",
    "ServerError",
    "ServerUnreachable",
    "TimedOut",
    "UnsafePath",
    "WaitFailed",
    "WaitResult",
    "__version__",
]
