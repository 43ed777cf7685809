"""Keyless Sigstore bundles: refused unless an offline trust root is configured.

Keyless verification needs the Fulcio and Rekor roots; fetching them at
verification time would make the result depend on the network. Without a
configured offline trust root a bundle is refused, never accepted. Verifying
with a configured root is not implemented yet and is refused as unsupported.
"""

from __future__ import annotations

from datetime import datetime

from registry.digests import ArtifactDigest
from registry.errors import Reason, Rejected
from registry.facts import AttestationFacts


def verify_sigstore_bundle(
    bundle: bytes,
    artifact: ArtifactDigest,
    *,
    trusted_root: bytes | None,
    now: datetime,
) -> AttestationFacts:
    """Verify a keyless Sigstore bundle for ``artifact``; always raises for now."""
    del bundle, artifact, now
    if trusted_root is None:
        raise Rejected(
            Reason.SIGSTORE_NO_TRUST_ROOT,
            "keyless Sigstore bundles need an offline trust root; none is configured",
        )
    raise Rejected(
        Reason.SIGSTORE_UNSUPPORTED,
        "keyless Sigstore verification with an offline trust root is not implemented yet",
    )
