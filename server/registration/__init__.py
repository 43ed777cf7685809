"""Registration on verified supply-chain evidence: the tenant's trust roots (``trust``) and
its models (``models``), agent templates and tools (``artifacts``), every evidence
kind (``evidence``); request bodies, limits and rejection errors in ``common``.
The verification itself is :mod:`registry`'s."""

from server.registration.artifacts import ArtifactRegistry
from server.registration.common import (
    MAX_JSON_ARTIFACT_BYTES,
    MAX_JSON_BODY_BYTES,
    ArtifactRegister,
    ModelRegister,
    TrustRootIn,
)
from server.registration.models import RegistryService
from server.registration.trust import TableTrustStore

__all__ = [
    "MAX_JSON_ARTIFACT_BYTES",
    "MAX_JSON_BODY_BYTES",
    "ArtifactRegister",
    "ArtifactRegistry",
    "ModelRegister",
    "RegistryService",
    "TableTrustStore",
    "TrustRootIn",
]
