"""`aion registry verify`: exit 0 with facts, 1 with the reason, 2 on usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli.main import main

from .conftest import (
    ARTIFACT,
    BUILDER,
    Keys,
    envelope,
    make_layout,
    make_link,
    sign_layout,
    slsa_statement,
)


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    try:
        code = main(["registry", "verify", *[str(a) for a in args]])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write_key(path: Path, keys_signer: object) -> Path:
    path.write_text(json.dumps(keys_signer.public_key.to_dict()))  # type: ignore[attr-defined]
    return path


@pytest.fixture
def layout_files(keys: Keys, tmp_path: Path) -> dict[str, Path]:
    links = tmp_path / "links"
    links.mkdir()
    name, raw = make_link(tmp_path / "work", keys.func1, {"model.bin": ARTIFACT})
    (links / name).write_bytes(raw)
    layout = tmp_path / "root.layout"
    layout.write_bytes(sign_layout(make_layout([keys.func1]), keys.owner))
    return {
        "layout": layout,
        "links": links,
        "artifact": tmp_path / "work" / "model.bin",
        "key": _write_key(tmp_path / "owner.pub.json", keys.owner),
    }


def test_layout_verified(capsys: pytest.CaptureFixture[str], layout_files: dict[str, Path]) -> None:
    f = layout_files
    code, out, _ = _run(
        capsys,
        "--layout",
        f["layout"],
        "--layout-key",
        f["key"],
        "--links",
        f["links"],
        "--artifact",
        f["artifact"],
    )
    assert code == 0
    facts = json.loads(out)
    assert facts["kind"] == "in-toto-layout"
    assert facts["layout_name"] == "root"
    assert facts["step_names"] == ["build"]


def test_layout_rejected_with_reason(
    capsys: pytest.CaptureFixture[str], layout_files: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the product")
    f = layout_files
    code, out, err = _run(
        capsys,
        "--layout",
        f["layout"],
        "--layout-key",
        f["key"],
        "--links",
        f["links"],
        "--artifact",
        other,
    )
    assert code == 1
    assert out == ""
    assert err.startswith("reason: digest_mismatch: ")


def test_attestation_with_pem_key(
    capsys: pytest.CaptureFixture[str], keys: Keys, tmp_path: Path
) -> None:
    import hashlib

    artifact = tmp_path / "model.bin"
    artifact.write_bytes(ARTIFACT)
    env = tmp_path / "provenance.json"
    env.write_bytes(
        envelope(slsa_statement(hashlib.sha256(ARTIFACT).hexdigest()), keys.ec_attester)
    )
    key = tmp_path / "attester.pem"
    key.write_text(keys.ec_attester.public_key.keyval["public"])
    base = ["--attestation", env, "--key", key, "--artifact", artifact]
    code, out, _ = _run(capsys, *base, "--builder", BUILDER, "--parameter", "repository")
    assert code == 0
    assert json.loads(out)["builder_id"] == BUILDER
    code, _, err = _run(capsys, *base, "--parameter", "repository")
    assert code == 1
    assert err.startswith("reason: untrusted_builder: ")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--layout", "x.layout", "--attestation", "y.json"],
        ["--attestation", "y.json", "--artifact", "a.bin"],
        ["--layout", "x.layout", "--links", "."],
        ["--no-such-option"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert "error" in err


def test_model_signature(capsys: pytest.CaptureFixture[str], keys: Keys, tmp_path: Path) -> None:
    from model_signing import signing

    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w")
    private = tmp_path / "attester.pem"
    private.write_bytes(keys.ec_attester.private_bytes)
    public = tmp_path / "attester.pub.pem"
    public.write_text(keys.ec_attester.public_key.keyval["public"])
    signing.Config().use_elliptic_key_signer(private_key=private).sign(
        model, tmp_path / "model.sig"
    )
    args = ["--model-signature", tmp_path / "model.sig", "--model", model, "--key", public]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    assert json.loads(out)["kind"] == "model-signing"
    (model / "weights.bin").write_bytes(b"tampered")
    code, _, err = _run(capsys, *args)
    assert (code, err.split(":")[0:2]) == (1, ["reason", " digest_mismatch"])
