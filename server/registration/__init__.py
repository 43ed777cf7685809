"""Registration on verified supply-chain evidence: the tenant's trust roots (``trust``) and
its models (``models``); request bodies, limits and rejection errors in ``common``.
The verification itself is :mod:`registry`'s."""

from server.registration.common import (
    MAX_JSON_ARTIFACT_BYTES,
    MAX_JSON_BODY_BYTES,
    ModelRegister,
    TrustRootIn,
)
from server.registration.models import RegistryService
from server.registration.trust import TableTrustStore

__all__ = [
    "MAX_JSON_ARTIFACT_BYTES",
    "MAX_JSON_BODY_BYTES",
    "ModelRegister",
    "RegistryService",
    "TableTrustStore",
    "TrustRootIn",
]
