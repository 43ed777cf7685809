"""`aion registry import | lock` — bring the old platform's REGISTRY.yaml under control.

``import`` checks every manifest and reference of an index first, then writes
all of them in one transaction (or nothing): models into ``models`` and tools
into ``tools``, *registered, unverified*. Algorithms and services have no table
yet: they are checked, resolve references, and are reported as not stored.
``lock`` writes a lock file of manifest digests; ``lock --check`` reports drift.

Exit codes: 0 all accepted / no drift, 1 a manifest refused / drift, 2 usage.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from registry.errors import Reason, Rejected
from registry.index import (
    Checked,
    IndexInvalid,
    IndexReport,
    Kind,
    Known,
    Manifest,
    check_entries,
    load_index,
)
from registry.lock import diff_locks, dump_lock, lock_document, parse_lock
from server.cli.common import EXIT_FAIL, EXIT_OK, fail
from server.cli.database import run_on_database
from server.db.tables import Model, Tenant, Tool

T = TypeVar("T")
SOURCE = "registry-import"


async def _known(tenant: str) -> tuple[Known, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The tenant's model and tool names, and its rows keyed by id."""
    if not await Tenant.exists().where(Tenant.id == tenant):
        fail(f"no tenant `{tenant}` (create it with `aion tenants create`)")
    models = await Model.select().where(Model.tenant == tenant).output(load_json=True).run()
    tools = await Tool.select().where(Tool.tenant == tenant).output(load_json=True).run()
    known = Known(
        models=frozenset(str(m["name"]) for m in models),
        tools=frozenset(str(t["name"]) for t in tools),
    )
    return known, {str(m["id"]): m for m in models}, {str(t["id"]): t for t in tools}


def _model_id(tenant: str, name: str) -> str:
    return f"mdl_{tenant}_{name}"


def _tool_id(tenant: str, name: str) -> str:
    return f"{tenant}:{name}"


def _record(manifest: Manifest) -> dict[str, Any]:
    """What the import remembers of a manifest (its bare signature is kept as a claim only)."""
    return {
        "source": SOURCE,
        "path": manifest.path,
        "version": manifest.version,
        "declared_sha256": manifest.sha256,
        "content_sha256": manifest.content_sha256,
        "references": [str(r) for r in manifest.references],
        "signature_claimed": manifest.signature is not None,
    }


def _against_rows(
    report: IndexReport, tenant: str, models: dict[str, dict[str, Any]]
) -> IndexReport:
    """Refuse a manifest that contradicts a model already verified by real evidence."""
    results = []
    for checked in report.results:
        outcome = checked
        manifest = checked.manifest
        if manifest is not None and manifest.kind is Kind.MODEL:
            row = models.get(_model_id(tenant, manifest.name))
            if row is not None and row["verified"] and row["sha256"] != manifest.sha256:
                why = (
                    f"model `{manifest.name}` is verified with sha256 `{row['sha256']}`; "
                    f"the manifest declares `{manifest.sha256}`"
                )
                outcome = Checked(checked.entry, refusal=Rejected(Reason.DIGEST_MISMATCH, why))
        results.append(outcome)
    return IndexReport(report.index, tuple(results))


async def _write(
    engine: Any,
    tenant: str,
    accepted: list[Manifest],
    models: dict[str, dict[str, Any]],
    tools: dict[str, dict[str, Any]],
) -> None:
    """Write every accepted model and tool in one transaction."""
    sqlite = isinstance(engine, SQLiteEngine)
    txn = engine.transaction(TransactionType.immediate) if sqlite else engine.transaction()
    async with txn:
        for manifest in accepted:
            record = _record(manifest)
            if manifest.kind is Kind.MODEL:
                mid = _model_id(tenant, manifest.name)
                row = models.get(mid)
                if row is not None and row["verified"]:
                    continue  # verified by evidence, same digest: nothing to record
                attributes = {**(row["attributes"] if row else {}), "registry": record}
                values: dict[Any, Any] = {
                    Model.registered: True,
                    Model.verified: False,
                    Model.sha256: manifest.sha256,
                    Model.attributes: attributes,
                }
                if manifest.privacy is not None:
                    values[Model.privacy] = manifest.privacy
                if manifest.admin_approval_required:
                    values[Model.admin_approval_required] = True
                if row is not None:
                    await Model.update(values).where(Model.id == mid).run()
                    continue
                await Model.insert(
                    Model(
                        id=mid,
                        tenant=tenant,
                        name=manifest.name,
                        privacy=manifest.privacy or "allow-api",
                        registered=True,
                        verified=False,
                        admin_approval_required=manifest.admin_approval_required,
                        attributes=attributes,
                        created_at=datetime.now(UTC),
                        sha256=manifest.sha256,
                    )
                ).run()
            elif manifest.kind is Kind.TOOL:
                tid = _tool_id(tenant, manifest.name)
                trow = tools.get(tid)
                marks = {"registered": True, "verified": False, "sha256": manifest.sha256}
                attributes = {**(trow["attributes"] if trow else {}), **marks, "registry": record}
                if trow is not None:
                    await Tool.update({Tool.attributes: attributes}).where(Tool.id == tid).run()
                    continue
                await Tool.insert(
                    Tool(
                        id=tid,
                        tenant=tenant,
                        name=manifest.name,
                        category="",
                        allowed=True,
                        attributes=attributes,
                    )
                ).run()


def _print_report(report: IndexReport) -> None:
    for checked in report.results:
        entry = checked.entry
        if checked.refusal is not None:
            refusal = checked.refusal
            print(f"refused  {entry.kind.value:<9} {entry.path}: {refusal.code}: {refusal.message}")
            continue
        manifest = checked.manifest
        assert manifest is not None
        notes = ["registered, unverified"]
        if manifest.kind in (Kind.ALGORITHM, Kind.SERVICE):
            notes = [f"not stored: no table for {manifest.kind.value}s"]
        if manifest.signature is not None:
            notes.append("integrity.signature ignored: not evidence")
        what = f"{manifest.name}@{manifest.version}"
        print(f"accepted {entry.kind.value:<9} {entry.path}: {what} ({'; '.join(notes)})")


def cmd_import(args: argparse.Namespace) -> int:
    """Check an index; write all of it (or nothing) as registered, unverified."""
    index = Path(args.index)
    try:
        entries = load_index(index)
    except IndexInvalid as exc:
        fail(f"`{index}`: {exc.message}")
    tenant = args.tenant

    async def work(engine: Any) -> IndexReport:
        known, models, tools = await _known(tenant)
        report = IndexReport(str(index), tuple(check_entries(index.parent, entries, known)))
        report = _against_rows(report, tenant, models)
        if report.ok and not args.dry_run:
            await _write(engine, tenant, report.accepted, models, tools)
        return report

    report = run_on_database(args, work, "use the database")
    _print_report(report)
    refused = sum(1 for r in report.results if not r.accepted)
    total = len(report.results)
    if refused:
        print(f"{refused} of {total} manifests refused; nothing imported")
        return EXIT_FAIL
    done = "would import" if args.dry_run else "imported"
    print(f"{total} manifests accepted; {done} for tenant {tenant} (registered, unverified)")
    return EXIT_OK


def cmd_lock(args: argparse.Namespace) -> int:
    """Write the index's lock file, or with --check compare against one."""
    index = Path(args.index)
    try:
        lock = lock_document(index)
    except IndexInvalid as exc:
        fail(f"`{index}`: {exc.message}")
    if args.check is None:
        out = Path(args.output) if args.output else index.parent / "registry.lock"
        try:
            out.write_text(dump_lock(lock))
        except OSError as exc:
            fail(f"cannot write `{out}` ({exc.strerror or exc})")
        print(f"locked {len(lock['manifests'])} manifests in {out}")
        return EXIT_OK
    path = Path(args.check) if args.check else index.parent / "registry.lock"
    try:
        old = parse_lock(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read lock `{path}` ({exc})")
    except IndexInvalid as exc:
        fail(f"`{path}`: {exc.message}")
    drift = diff_locks(old, lock)
    for item in drift:
        print(item)
    if drift:
        print(f"{len(drift)} manifests drifted from {path}")
        return EXIT_FAIL
    print(f"no drift: {len(lock['manifests'])} manifests match {path}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add `import` and `lock` under `aion registry`."""
    imp = sub.add_parser("import", help="import a REGISTRY.yaml index as registered, unverified")
    imp.add_argument("index", metavar="REGISTRY.yaml")
    imp.add_argument("--tenant", default="default", help="tenant to import into (default: default)")
    where = imp.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="embedded data directory (SQLite `aion.db`)")
    where.add_argument("--database-url", help="postgresql://user:pass@host:port/db")
    imp.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    imp.set_defaults(handler=cmd_import)
    lock = sub.add_parser("lock", help="write or check a lock file of manifest digests")
    lock.add_argument("index", metavar="REGISTRY.yaml")
    lock.add_argument(
        "-o", "--output", help="lock file to write (default: registry.lock beside it)"
    )
    lock.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="LOCK",
        help="compare with LOCK (default: registry.lock beside the index); exit 1 on drift",
    )
    lock.set_defaults(handler=cmd_lock)
