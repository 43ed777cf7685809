"""The embedded default, made ready: keys, database, tenants, shipped bundles, services.

Everything here is idempotent: a second start finds what the first created.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from engine.bundle import bundle_from_files, read_tarball, sign_files, write_tarball
from engine.bundle.files import SIGNATURES_FILE, build_sources
from engine.opa_client_aiohttp import AiohttpOpaQuerier
from server.auth import TokenService, utcnow
from server.catalog import Catalog
from server.db.engine import bind, engine_for
from server.db.tables import Bundle, Model, Tenant, Tool, TrustedKey
from server.decisionlog import PiccoloDecisionLog
from server.gate import Gate
from server.policies import GLOBAL_TENANT, OpaSetup, PolicyService
from server.ratelimit import MemoryBucketStore, RateLimiter, RedisBucketStore
from server.settings import Settings
from server.state import Services
from server.tenants import TenantDirectory

DEFAULT_TENANT = "default"
BUNDLE_KEY_ID = "aion-embedded"

#: The tool catalog of the platform we replace (FIXTURES.md).
SEED_TOOLS = (
    "rag.search",
    "file.read",
    "ops.shell",
    "http.get",
    "search",
    "web_search",
    "browser",
    "file_writer",
    "crm_sync",
    "lead_enrichment",
    "github",
    "git_clone",
    "summarizer",
)
#: Its models and their privacy levels. Registered, not verified: verification needs attestations.
SEED_MODELS = (
    ("llama3.2:3b", "local-only", False),
    ("mixtral-8x7b", "hybrid", False),
    ("gpt-4o", "allow-api", False),
    ("azure-gpt4o", "allow-api", False),
    ("hf-deepseek-v2", "allow-api", False),
    ("gpt-4.5", "allow-api", True),
    ("llama3.2-3b", "local-only", False),
    ("local-echo", "local-only", False),
    ("qwen-2.5-max", "allow-api", False),
    ("deepseek-v3", "allow-api", False),
    ("gemini-2.5-pro", "allow-api", False),
    ("llama-4-maverick", "allow-api", False),
)


@dataclass(frozen=True)
class Keys:
    """The embedded default's secrets, kept in the data directory (mode 600)."""

    jwt_secret: bytes
    bundle_private: str
    bundle_public: str
    chain_private: ed25519.Ed25519PrivateKey


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_keys(data_dir: Path) -> Keys:
    """Load the data directory's keys, generating any that is missing."""
    jwt_path, bundle_path, chain_path = (
        data_dir / "jwt.secret",
        data_dir / "bundle-signing.pem",
        data_dir / "chain-signing.pem",
    )
    if not jwt_path.exists():
        _write_secret(jwt_path, secrets.token_hex(32).encode())
    if not bundle_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_secret(
            bundle_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    if not chain_path.exists():
        chain = ed25519.Ed25519PrivateKey.generate()
        _write_secret(
            chain_path,
            chain.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    bundle_key = serialization.load_pem_private_key(bundle_path.read_bytes(), None)
    chain_key = serialization.load_pem_private_key(chain_path.read_bytes(), None)
    assert isinstance(chain_key, ed25519.Ed25519PrivateKey)
    public = (
        bundle_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    (data_dir / "bundle-signing.pub").write_text(public)
    (data_dir / "chain-signing.pub").write_bytes(
        chain_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Keys(jwt_path.read_bytes().strip(), bundle_path.read_text(), public, chain_key)


def migrate(settings: Settings) -> None:
    """Run piccolo migrations forwards (a child process: piccolo reads its config once)."""
    env = {
        **os.environ,
        "PICCOLO_CONF": "server.db.piccolo_conf",
        "AION_DATABASE_URL": settings.database_url,
        "AION_DATA_DIR": str(settings.data_dir),
    }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from piccolo.main import main; sys.argv=['piccolo','migrations','forwards','aion']; main()",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise RuntimeError(f"migrations failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def tenant_id(name: str) -> str:
    """A tenant id from its name: lower case, `a-z0-9-`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not slug or len(slug) > 64:
        raise ValueError(f"tenant name `{name}` gives no usable id")
    return slug


async def ensure_tenant(name: str) -> tuple[str, bool]:
    """(id, created): the tenant, created with the seed tools and models when new."""
    tid = tenant_id(name)
    if await Tenant.exists().where(Tenant.id == tid):
        return tid, False
    now = utcnow()
    await Tenant.insert(Tenant(id=tid, name=name, settings={}, created_at=now))
    for tool in SEED_TOOLS:
        # Tool ids are unique across tenants; the API names a tool by its `name`.
        await Tool.insert(
            Tool(
                id=f"{tid}:{tool}", tenant=tid, name=tool, category="", allowed=True, attributes={}
            )
        )
    for model, privacy, approval in SEED_MODELS:
        await Model.insert(
            Model(
                id=f"mdl_{tid}_{model}",
                tenant=tid,
                name=model,
                privacy=privacy,
                registered=True,
                verified=False,
                admin_approval_required=approval,
                attributes={},
                created_at=now,
            )
        )
    return tid, True


def build_signed(source: Path, keys: Keys) -> tuple[str, str, bytes]:
    """(name, revision, archive) of a shipped bundle, signed with the embedded key."""
    files = build_sources(source)
    bundle = bundle_from_files(files, source.name)
    files[SIGNATURES_FILE] = sign_files(
        files, keys.bundle_private, algorithm="ES256", key_id=BUNDLE_KEY_ID, issued_at=utcnow()
    )
    return bundle.name, bundle.revision, write_tarball(files)


async def install_shipped_bundles(settings: Settings, keys: Keys) -> list[str]:
    """Build, sign, store and activate the shipped bundles as global bundles (new revisions only)."""
    if not await TrustedKey.exists().where(TrustedKey.id == f"{GLOBAL_TENANT}:{BUNDLE_KEY_ID}"):
        await TrustedKey.insert(
            TrustedKey(
                id=f"{GLOBAL_TENANT}:{BUNDLE_KEY_ID}",
                tenant=GLOBAL_TENANT,
                key_id=BUNDLE_KEY_ID,
                algorithm="ES256",
                public_key=keys.bundle_public,
                created_at=utcnow(),
            )
        )
    installed = []
    for source in sorted(p for p in settings.policies_dir.iterdir() if (p / ".manifest").exists()):
        name, revision, archive = build_signed(source, keys)
        if await Bundle.exists().where(
            (Bundle.tenant == GLOBAL_TENANT) & (Bundle.name == name) & (Bundle.revision == revision)
        ):
            continue
        await Bundle.update({Bundle.status: "stored"}).where(
            (Bundle.tenant == GLOBAL_TENANT) & (Bundle.name == name)
        )
        await Bundle.insert(
            Bundle(
                id=f"bnd_{secrets.token_hex(10)}",
                tenant=GLOBAL_TENANT,
                name=name,
                revision=revision,
                digest=bundle_from_files(read_tarball(archive), name).digest,
                status="active",
                signed_by=BUNDLE_KEY_ID,
                archive=base64.b64encode(archive).decode(),
                created_at=utcnow(),
            )
        )
        installed.append(f"{name}@{revision}")
    return installed


def opa_setup(settings: Settings) -> OpaSetup:
    """The OPA sidecar querier of ``settings`` (none without ``opa_url``); opens lazily.

    A malformed ``opa_url`` or ``rego_evaluator`` fails here, at start-up.
    """
    if settings.rego_evaluator not in ("embedded", "opa"):
        raise ValueError(
            f"AION_REGO_EVALUATOR is `{settings.rego_evaluator}`; expected `embedded` or `opa`"
        )
    timeout_s = settings.opa_timeout_ms / 1000
    querier = None
    if settings.opa_url:
        querier = AiohttpOpaQuerier(settings.opa_url, token=settings.opa_token, timeout_s=timeout_s)
    return OpaSetup(querier, settings.rego_evaluator, timeout_s, settings.opa_tenant)


def policy_service(settings: Settings, tenants: TenantDirectory) -> PolicyService:
    """The policy service of one process, with its OPA sidecar wiring."""
    return PolicyService(opa=opa_setup(settings), tenants=tenants)


def services(settings: Settings, keys: Keys) -> Services:
    """Wire the services of one process (the database is bound here)."""
    db = engine_for(settings.database_url, settings.data_dir)
    bind(db)
    tenants = TenantDirectory()
    policies = policy_service(settings, tenants)
    log = PiccoloDecisionLog(db)
    return Services(
        settings=settings,
        db=db,
        tokens=TokenService(settings, keys.jwt_secret),
        catalog=Catalog(),
        policies=policies,
        log=log,
        gate=Gate(db, policies, log, settings.decision_time_limit_ms, keys.chain_private),
        limiter=RateLimiter(
            RedisBucketStore(settings.redis_url) if settings.redis_url else MemoryBucketStore(),
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
        ),
        tenants=tenants,
        data_dir=settings.data_dir,
    )
