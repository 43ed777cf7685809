"""Bundles: loading, OPA-compatible signing and verification, building."""

from engine.bundle.bundle import Bundle, CedarLink, SourceFile, bundle_from_files, load_bundle
from engine.bundle.files import DEFAULT_LIMITS, Limits, read_tarball, write_tarball
from engine.bundle.manifest import Manifest, parse_manifest
from engine.bundle.signing import (
    SignedClaims,
    VerificationKey,
    check_rollback,
    sign_files,
    verify_files,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Bundle",
    "CedarLink",
    "Limits",
    "Manifest",
    "SignedClaims",
    "SourceFile",
    "VerificationKey",
    "bundle_from_files",
    "check_rollback",
    "load_bundle",
    "parse_manifest",
    "read_tarball",
    "sign_files",
    "verify_files",
    "write_tarball",
]
