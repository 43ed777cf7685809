"""Registration of models, agent templates, tools and bundles on verified supply-chain evidence.

Pure verification core: time is passed in, trust roots come from a
:class:`TrustStore`, links from a :class:`LinkSource`, artifacts live in an
:class:`ArtifactStore`. Each verifier returns :class:`AttestationFacts` (the
``context.attestations`` of the ``*.register`` decision) or raises
:class:`Rejected` with a stable :class:`Reason`.
"""

from registry.digests import (
    ArtifactDigest,
    check_integrity,
    check_sha256,
    digest_chunks,
    is_placeholder_signature,
    read_chunks,
)
from registry.errors import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
    Reason,
    RegistryError,
    Rejected,
)
from registry.facts import AttestationFacts, EvidenceKind, SubjectDigest
from registry.keyless import verify_sigstore_bundle
from registry.layout import LayoutPolicy, verify_layout
from registry.links import DirectoryLinkSource, InMemoryLinkSource, LinkSource
from registry.modelsig import verify_model_signature
from registry.statements import (
    IN_TOTO_PAYLOAD_TYPE,
    MODEL_SIGNING_V1,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPES,
    StatementPolicy,
    verify_statement,
)
from registry.store import (
    ArtifactStore,
    FilesystemArtifactStore,
    InMemoryArtifactStore,
    StoreLimits,
)
from registry.trust import InMemoryTrustStore, Purpose, TrustRoot, TrustStore

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "MODEL_SIGNING_V1",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPES",
    "ArtifactCorrupted",
    "ArtifactDigest",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "AttestationFacts",
    "DirectoryLinkSource",
    "EvidenceKind",
    "FilesystemArtifactStore",
    "InMemoryArtifactStore",
    "InMemoryLinkSource",
    "InMemoryTrustStore",
    "LayoutPolicy",
    "LinkSource",
    "Purpose",
    "Reason",
    "RegistryError",
    "Rejected",
    "StatementPolicy",
    "StoreLimits",
    "SubjectDigest",
    "TrustRoot",
    "TrustStore",
    "check_integrity",
    "check_sha256",
    "digest_chunks",
    "is_placeholder_signature",
    "read_chunks",
    "verify_layout",
    "verify_model_signature",
    "verify_sigstore_bundle",
    "verify_statement",
]
