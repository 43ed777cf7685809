"""Reading bundles safely: tarball entries, limits, reproducible archives, directories."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from engine.bundle import Limits, load_bundle, read_tarball, write_tarball
from engine.bundle.files import read_directory
from engine.errors import BundleError, BundleTooLarge


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    return info, data


def _tarball(*members: tuple[tarfile.TarInfo, bytes], compress: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


FILES = {
    ".manifest": b'{"revision": "7", "roots": ["aion"]}',
    "aion/agent/policy.rego": b"package aion.agent.deploy\n\ndeny contains 1 if false\n",
    "aion/data.json": b'{"limits": {"max": 3}}',
    ".signatures.json": b'{"signatures": []}',
}


# --- unsafe entries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil.rego", "a/../../evil.rego", "/../evil.rego", "a/b/../c.rego", "..\\evil.rego"],
)
def test_parent_relative_entries_are_refused(name: str) -> None:
    blob = _tarball(_member(name, b"package x\n"))
    with pytest.raises(BundleError, match=r"`\.\.` is not allowed"):
        read_tarball(blob)


def test_drive_qualified_entry_is_refused() -> None:
    with pytest.raises(BundleError, match="drive-qualified"):
        read_tarball(_tarball(_member("C:/evil.rego", b"x")))


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE],
    ids=["symlink", "hardlink", "chardev", "blockdev", "fifo"],
)
def test_links_and_devices_are_refused(kind: bytes) -> None:
    blob = _tarball(_member("/ok.rego", b"package ok\n"), _member("/link.rego", kind=kind))
    with pytest.raises(BundleError, match=r"`/link\.rego` is not a regular file") as info:
        read_tarball(blob, origin="b.tar.gz")
    assert info.value.message.startswith("b.tar.gz:")


@pytest.mark.parametrize("second", ["/p.rego", "p.rego", "./p.rego", "//p.rego"])
def test_duplicate_entries_are_refused(second: str) -> None:
    blob = _tarball(_member("/p.rego", b"package a\n"), _member(second, b"package b\n"))
    with pytest.raises(BundleError, match=r"duplicate entry `p\.rego`"):
        read_tarball(blob)


def test_leading_slash_is_the_bundle_root_as_in_opa() -> None:
    blob = _tarball(
        _member("/policy.rego", b"package p\n"),
        _member("/sub/data.json", b"{}"),
        _member("plain.rego", b"package q\n"),
    )
    assert read_tarball(blob) == {
        "policy.rego": b"package p\n",
        "sub/data.json": b"{}",
        "plain.rego": b"package q\n",
    }


def test_directory_entries_are_skipped() -> None:
    directory = tarfile.TarInfo("/sub")
    directory.type = tarfile.DIRTYPE
    blob = _tarball((directory, b""), _member("/sub/p.rego", b"package p\n"))
    assert read_tarball(blob) == {"sub/p.rego": b"package p\n"}


def test_uncompressed_tar_is_read_too() -> None:
    blob = _tarball(_member("/p.rego", b"package p\n"), compress=False)
    assert read_tarball(blob) == {"p.rego": b"package p\n"}


# --- limits ----------------------------------------------------------------------------------


def test_file_at_the_size_limit_is_accepted_one_byte_more_is_not() -> None:
    limits = Limits(max_file_bytes=10)
    assert read_tarball(_tarball(_member("/a.rego", b"x" * 10)), limits=limits) == {
        "a.rego": b"x" * 10
    }
    with pytest.raises(BundleTooLarge, match=r"`a\.rego` is larger than 10 bytes"):
        read_tarball(_tarball(_member("/a.rego", b"x" * 11)), limits=limits)


def test_total_size_limit() -> None:
    blob = _tarball(_member("/a.rego", b"a" * 8), _member("/b.rego", b"b" * 8))
    assert len(read_tarball(blob, limits=Limits(max_bundle_bytes=16))) == 2
    with pytest.raises(BundleTooLarge, match="bundle is larger than 15 bytes"):
        read_tarball(blob, limits=Limits(max_bundle_bytes=15))


def test_file_count_limit() -> None:
    blob = _tarball(*(_member(f"/{n}.rego", b"package p\n") for n in "abc"))
    assert len(read_tarball(blob, limits=Limits(max_files=3))) == 3
    with pytest.raises(BundleTooLarge, match="more than 2 files"):
        read_tarball(blob, limits=Limits(max_files=2))


def test_gzip_bomb_stops_at_the_limit() -> None:
    # 8 MiB of zeros compress to a few KiB; the header's size is refused before reading.
    blob = _tarball(_member("/data.json", b"0" * (8 * 1024 * 1024)))
    assert len(blob) < 64 * 1024
    with pytest.raises(BundleTooLarge):
        read_tarball(blob, limits=Limits(max_file_bytes=1024, max_bundle_bytes=4096))


def test_load_bundle_applies_limits_to_directories(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"p{n}.rego").write_text(f"package p{n}\n")
    with pytest.raises(BundleTooLarge, match="more than 2 files"):
        load_bundle(tmp_path, limits=Limits(max_files=2))


# --- unreadable input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"definitely not a tarball",
        gzip.compress(b"gzip of something that is not a tar archive"),
        bytes(range(256)) * 8,
    ],
    ids=["empty", "text", "gzip-not-tar", "binary"],
)
def test_garbage_is_a_bundle_error(blob: bytes) -> None:
    with pytest.raises(BundleError) as info:
        read_tarball(blob, origin="junk.tar.gz")
    assert type(info.value) is BundleError
    assert "junk.tar.gz" in info.value.message


def test_truncated_archive_is_a_bundle_error() -> None:
    blob = _tarball(_member("/big.rego", b"package p\n" + b"#" * 20000))
    with pytest.raises(BundleError):
        read_tarball(blob[: len(blob) // 2])


# --- writing ---------------------------------------------------------------------------------


def test_write_tarball_is_reproducible() -> None:
    first = write_tarball(dict(FILES))
    reordered = dict(reversed(list(FILES.items())))
    assert write_tarball(reordered) == first
    assert write_tarball(dict(FILES)) == first
    changed = {**FILES, "aion/data.json": b'{"limits": {"max": 4}}'}
    assert write_tarball(changed) != first


def test_write_tarball_round_trips_through_read_tarball() -> None:
    assert read_tarball(write_tarball(dict(FILES))) == FILES


def test_write_tarball_entries_are_normalised_and_ordered_like_opa() -> None:
    with tarfile.open(fileobj=io.BytesIO(write_tarball(dict(FILES))), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "/.signatures.json",
        "/.manifest",
        "/aion/agent/policy.rego",
        "/aion/data.json",
    ]
    assert {(m.mtime, m.mode, m.uid, m.gid) for m in members} == {(0, 0o644, 0, 0)}
    assert all(m.isreg() for m in members)


def test_load_bundle_from_tarball_matches_the_directory(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name, raw in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(raw)
    archive = tmp_path / "shipped.tar.gz"
    archive.write_bytes(write_tarball(read_directory(source)))
    from_dir, from_tar = load_bundle(source), load_bundle(archive)
    assert dict(from_tar.files) == dict(from_dir.files) == FILES
    assert (from_dir.name, from_tar.name) == ("src", "shipped")
    assert from_tar.digest == from_dir.digest
    assert load_bundle(archive, name="explicit").name == "explicit"


def test_load_bundle_name_comes_from_manifest_metadata(tmp_path: Path) -> None:
    (tmp_path / ".manifest").write_text('{"metadata": {"name": "from-manifest"}}')
    assert load_bundle(tmp_path).name == "from-manifest"


def test_load_bundle_of_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nope.tar.gz")


# --- directories -----------------------------------------------------------------------------


def test_read_directory_keeps_only_bundle_files(tmp_path: Path) -> None:
    layout = {
        ".manifest": "{}",
        "policy.rego": "package p\n",
        "policy_test.rego": "package p_test\n",
        "data.json": "{}",
        "nested/data.yaml": "a: 1\n",
        "cedar/main.cedar": "permit(principal, action, resource);",
        "cedar/schema.cedarschema": "entity User;",
        "cedar/links.cedarlinks.json": "[]",
        "README.md": "# docs",
        "notes.txt": "x",
        "other.json": "{}",
        ".git/config": "[core]",
        ".git/hooks/evil.rego": "package evil\n",
        "__pycache__/x.rego": "package cached\n",
        "node_modules/m/data.json": "{}",
    }
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(read_directory(tmp_path)) == [
        ".manifest",
        "cedar/links.cedarlinks.json",
        "cedar/main.cedar",
        "cedar/schema.cedarschema",
        "data.json",
        "nested/data.yaml",
        "policy.rego",
        "policy_test.rego",
    ]
    assert read_directory(tmp_path)["policy.rego"] == b"package p\n"


def test_read_directory_refuses_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside.rego"
    outside.write_text("package secret\n")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "link.rego").symlink_to(outside)
    with pytest.raises(BundleError, match="symbolic link"):
        read_directory(bundle)


def test_read_directory_of_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f.rego").write_text("package p\n")
    with pytest.raises(BundleError, match="not a directory"):
        read_directory(tmp_path / "f.rego")
