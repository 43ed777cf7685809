"""`aion bundle build | sign | verify | inspect` — OPA-compatible bundles."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from engine import compile_bundles
from engine.bundle import (
    VerificationKey,
    bundle_from_files,
    read_tarball,
    sign_files,
    verify_files,
    write_tarball,
)
from engine.bundle.bundle import default_bundle_name
from engine.bundle.canonical import file_digest
from engine.bundle.files import MANIFEST_FILE, SIGNATURES_FILE, build_sources, read_directory
from engine.bundle.manifest import parse_manifest
from engine.bundle.signing import ALGORITHMS
from engine.errors import SignatureError
from server.cli.common import EXIT_OK, fail, read_key


def _read_archive(path: Path) -> dict[str, bytes]:
    if not path.is_file():
        fail(f"`{path}`: no such bundle file")
    return read_tarball(path.read_bytes(), str(path))


def _with_revision(files: dict[str, bytes], revision: str | None) -> dict[str, bytes]:
    if revision is None:
        return files
    raw = files.get(MANIFEST_FILE)
    manifest: dict[str, Any] = json.loads(raw) if raw else {}
    parse_manifest(raw)  # refuse a malformed manifest before rewriting it
    manifest["revision"] = revision
    return {**files, MANIFEST_FILE: json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"}


def _sign(files: dict[str, bytes], args: argparse.Namespace) -> dict[str, bytes]:
    if not args.signing_key:
        fail("--signing-key is required to sign")
    now = datetime.now(UTC)
    unsigned = {n: r for n, r in files.items() if n != SIGNATURES_FILE}
    signature = sign_files(
        unsigned,
        read_key(args.signing_key),
        algorithm=args.signing_alg,
        key_id=args.key_id,
        scope=args.scope or "",
        issued_at=now,
        issuer=args.issuer or "",
        not_before=now if args.valid_for else None,
        expires=now + timedelta(seconds=args.valid_for) if args.valid_for else None,
    )
    return {**unsigned, SIGNATURES_FILE: signature}


def _name(files: dict[str, bytes], fallback: str) -> str:
    value = parse_manifest(files.get(MANIFEST_FILE)).metadata.get("name")
    return value if isinstance(value, str) and value else fallback


def cmd_build(args: argparse.Namespace) -> int:
    """Load, compile, optionally sign, and write a bundle archive."""
    source = Path(args.source)
    files = _with_revision(build_sources(source, include_tests=args.include_tests), args.revision)
    bundle = bundle_from_files(files, _name(files, source.resolve().name))
    compile_bundles([bundle])
    if args.signing_key:
        files = _sign(files, args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(write_tarball(files))
    signed = "signed" if args.signing_key else "unsigned"
    print(
        f"built {out}: bundle `{bundle.name}` revision `{bundle.revision}`, {len(files)} files, {signed}"
    )
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """(Re-)sign an existing bundle archive."""
    files = _read_archive(Path(args.bundle))
    compile_bundles(
        [bundle_from_files(files, _name(files, default_bundle_name(Path(args.bundle))))]
    )
    out = Path(args.output or args.bundle)
    out.write_bytes(write_tarball(_sign(files, args)))
    print(f"signed {out} with key `{args.key_id}` ({args.signing_alg})")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify signature, file set, digests, window and revision; then that it compiles."""
    path = Path(args.bundle)
    files = _read_archive(path)
    key = VerificationKey(read_key(args.verification_key), args.signing_alg, args.scope or "")
    claims = verify_files(
        files,
        {args.verification_key_id: key},
        now=datetime.now(UTC),
        key_id=args.verification_key_id,
        last_revision=args.last_revision,
    )
    bundle = bundle_from_files(files, _name(files, default_bundle_name(path)))
    compile_bundles([bundle])
    print(
        f"verified {path}: bundle `{bundle.name}` revision `{bundle.revision}`, "
        f"{len(claims.files)} files signed by `{claims.key_id}` ({claims.algorithm})"
    )
    return EXIT_OK


def _signature_info(files: dict[str, bytes]) -> dict[str, Any] | None:
    raw = files.get(SIGNATURES_FILE)
    if raw is None:
        return None
    try:
        token = json.loads(raw)["signatures"][0]
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except (ValueError, KeyError, IndexError, TypeError, jwt.PyJWTError) as exc:
        raise SignatureError(f"`.signatures.json` is malformed ({exc})") from exc
    claims.pop("files", None)
    return {"header": header, "claims": claims, "verified": False}


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a bundle archive without trusting it."""
    path = Path(args.bundle)
    files = _read_archive(path) if path.is_file() else read_directory(path)
    bundle = bundle_from_files(files, _name(files, default_bundle_name(path)))
    signature = _signature_info(files)
    listing: list[dict[str, Any]] = [
        {"name": n, "sha256": file_digest(n, r), "size": len(r)} for n, r in sorted(files.items())
    ]
    info: dict[str, Any] = {
        "name": bundle.name,
        "revision": bundle.revision,
        "roots": bundle.manifest.roots,
        "metadata": bundle.manifest.metadata,
        "rego_version": bundle.manifest.rego_version,
        "digest": bundle.digest,
        "files": listing,
        "rego_modules": [m.path for m in bundle.rego],
        "rego_tests": [m.path for m in bundle.rego_tests],
        "cedar_policies": [p.path for p in bundle.cedar],
        "cedar_schema": bundle.cedar_schema.path if bundle.cedar_schema else None,
        "signature": signature,
    }
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(
        f"bundle    {info['name']}\nrevision  {info['revision']}\nroots     {', '.join(bundle.manifest.roots)}"
    )
    print(f"digest    {info['digest']}")
    shown = (
        "none"
        if signature is None
        else f"{json.dumps(signature['header'])} {json.dumps(signature['claims'])}"
    )
    print(f"signature {shown}")
    print("files:")
    for entry in listing:
        print(f"  {entry['sha256'][:16]}  {entry['size']:>8}  {entry['name']}")
    return EXIT_OK


def _signing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signing-key", metavar="KEY", help="PEM private key (or HMAC secret) file")
    p.add_argument("--signing-alg", choices=ALGORITHMS, default="RS256")
    p.add_argument(
        "--key-id", default="default", help="key id written to the JWT `kid` (default: default)"
    )
    p.add_argument("--scope", help="signature scope claim")
    p.add_argument("--issuer", help="`iss` claim")
    p.add_argument(
        "--valid-for", type=int, metavar="SECONDS", help="validity window from now (nbf/exp)"
    )


def register(commands: Any) -> None:
    """Add `aion bundle ...` to the command tree."""
    bundle = commands.add_parser("bundle", help="build, sign, verify and inspect policy bundles")
    sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("build", help="compile a source directory into a .tar.gz bundle")
    p.add_argument("source", metavar="SRC")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tar.gz")
    p.add_argument("--revision", help="set the manifest revision")
    p.add_argument(
        "--include-tests", action="store_true", help="keep *_test.rego files in the bundle"
    )
    _signing_flags(p)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("sign", help="sign (or re-sign) a bundle archive")
    p.add_argument("bundle", metavar="BUNDLE.tar.gz")
    p.add_argument("-o", "--output", metavar="OUT.tar.gz", help="default: overwrite the input")
    _signing_flags(p)
    p.set_defaults(handler=cmd_sign)

    p = sub.add_parser("verify", help="verify a signed bundle fail-closed")
    p.add_argument("bundle", metavar="BUNDLE.tar.gz")
    p.add_argument(
        "--verification-key",
        required=True,
        metavar="KEY",
        help="PEM public key (or HMAC secret) file",
    )
    p.add_argument("--verification-key-id", default="default", metavar="ID")
    p.add_argument("--signing-alg", choices=ALGORITHMS, default="RS256")
    p.add_argument("--scope", help="expected signature scope")
    p.add_argument(
        "--last-revision",
        metavar="REV",
        help="refuse revisions not newer than this (anti-rollback)",
    )
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("inspect", help="show a bundle's manifest, files and signature")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_inspect)
