"""`aion policy fmt` formats Rego with a real `opa fmt`, and says so when it cannot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.cli.main import main

UGLY = 'package aion.tool.bind\nimport rego.v1\ndeny contains   "x"   if {input.x==1}\n'


def test_rego_is_formatted_with_opa(
    opa_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "bind.rego"
    policy.write_text(UGLY)
    assert main(["policy", "fmt", str(tmp_path), "--check", "--opa", str(opa_bin)]) == 1
    assert f"would reformat {policy}" in capsys.readouterr().out
    assert policy.read_text() == UGLY, "--check changes nothing"
    assert main(["policy", "fmt", str(tmp_path), "--opa", str(opa_bin)]) == 0
    assert 'deny contains "x" if input.x == 1' in policy.read_text()
    assert main(["policy", "fmt", str(tmp_path), "--check", "--opa", str(opa_bin)]) == 0


def test_unparsable_rego_exits_2(
    opa_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.rego").write_text("package x\ndeny contains if {\n")
    assert main(["policy", "fmt", str(tmp_path), "--opa", str(opa_bin)]) == 2
    assert "broken.rego" in capsys.readouterr().err


def test_without_opa_rego_is_reported_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AION_OPA_BIN", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    (tmp_path / "bind.rego").write_text(UGLY)
    assert main(["policy", "fmt", str(tmp_path), "--check"]) == 0
    assert "skipped 1 Rego file(s)" in capsys.readouterr().err
