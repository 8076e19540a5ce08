"""admin.token_file and the exposure warning: the token is read at load, and a file that
cannot give one is a finding at the token_file value."""
from __future__ import annotations

import os

import pytest

from mosnx.runtime import AdminConfig, ConfigError
from mosnx.runtime.config import admin_exposure, load_config_text


def load(tmp_path, admin: str):
    return load_config_text(f"admin: {admin}\n", str(tmp_path / "mosnx.yaml"))


def finding(tmp_path, admin: str) -> tuple[str, int, int, str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, admin)
    [d] = e.value.diagnostics
    return d.code, d.span.line, d.span.column, d.message


def test_token_is_read_relative_to_the_config_and_stripped(tmp_path):
    (tmp_path / "admin.token").write_text("  s3cr3t-T0ken_value.~+/==\n")
    admin = load(tmp_path, "{address: 0.0.0.0:15001, token_file: admin.token}").admin
    assert (admin.host, admin.port) == ("0.0.0.0", 15001)
    assert admin.token.path == str(tmp_path / "admin.token")
    assert admin.token.value == b"s3cr3t-T0ken_value.~+/=="
    assert "s3cr3t" not in repr(admin), "the token must never show in a repr or a log line"


def test_no_token_file_means_no_token(tmp_path):
    assert load(tmp_path, "{}").admin == AdminConfig("127.0.0.1", 15000)
    assert load(tmp_path, "{}").admin.token is None


def test_missing_token_file_is_a_finding_at_its_value(tmp_path):
    code, line, col, message = finding(tmp_path, "{token_file: nope.token}")
    assert (code, line, col) == ("C007", 1, 21)
    assert message.startswith('admin.token_file: no such file or folder "nope.token"')


@pytest.mark.parametrize("content, why", [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ("two words\n", "cannot follow \"Bearer \""),
    ("line1\nline2\n", "cannot follow \"Bearer \""),
    ("caf\u00e9", "cannot be sent in an Authorization header"),
    ("x" * 5000, "more than 4096 bytes"),
])
def test_unusable_token_file_is_a_finding_at_its_value(tmp_path, content, why):
    (tmp_path / "t").write_text(content)
    code, line, col, message = finding(tmp_path, "{token_file: t}")
    assert (code, line, col) == ("C004", 1, 21)
    assert message.startswith(f'admin.token_file: "{tmp_path / "t"}"') and why in message, message


def test_token_file_that_is_a_folder_is_a_finding(tmp_path):
    os.mkdir(tmp_path / "d")
    code, _, col, message = finding(tmp_path, "{token_file: d}")
    assert (code, col) == ("C004", 21) and "cannot read" in message


@pytest.mark.parametrize("address, exposed", [
    ("127.0.0.1:15000", False), ("127.0.0.2:15000", False), ("localhost:15000", False),
    ("'[::1]:15000'", False), ("0.0.0.0:15000", True), ("'[::]:15000'", True),
    ("10.1.2.3:15000", True), ("admin.example:15000", True),
])
def test_exposure_warning_beyond_loopback_without_token(tmp_path, address, exposed):
    admin = load(tmp_path, f"{{address: {address}}}").admin
    found = admin_exposure(admin)
    assert (found is not None) == exposed
    if found:
        assert (found.code, found.severity, found.span.line) == ("C401", "warning", 1)
        assert "token_file" in found.message


def test_a_token_silences_the_exposure_warning(tmp_path):
    (tmp_path / "t").write_text("abc")
    assert admin_exposure(load(tmp_path, "{address: 0.0.0.0:15000, token_file: t}").admin) is None
    assert admin_exposure(None) is None
