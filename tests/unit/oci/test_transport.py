"""What a registry's HTTPS requests trust: $SSL_CERT_FILE, $SSL_CERT_DIR, certs.d."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.transport import registry_certs, tls_context
from tests.integration.tls import CertificateAuthority


def _subjects(context_cas: list[dict[str, object]]) -> set[str]:
    names = set()
    for ca in context_cas:
        for rdn in ca.get("subject", ()):  # type: ignore[attr-defined]
            for key, value in rdn:
                if key == "commonName":
                    names.add(value)
    return names


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca", "trust unit CA")


def test_certs_d_of_the_registry(
    ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ca.certs_d(tmp_path / "certs.d", "reg.test:5000")
    client = ca.issue("client", client=True)
    (root / "reg.test:5000/client.cert").write_bytes(client.certificate.read_bytes())
    (root / "reg.test:5000/client.key").write_bytes(client.key.read_bytes())
    monkeypatch.setenv("OSBUILDER_CERTS_D", f"{tmp_path / 'empty'}:{root}")
    cas, pairs = registry_certs("reg.test:5000")
    assert cas == (str(root / "reg.test:5000/ca.crt"),)
    assert pairs == (
        (str(root / "reg.test:5000/client.cert"), str(root / "reg.test:5000/client.key")),
    )
    assert "trust unit CA" in _subjects(tls_context("reg.test:5000").get_ca_certs())
    assert "trust unit CA" not in _subjects(tls_context("other.test").get_ca_certs())
    (root / "reg.test:5000/client.key").unlink()
    with pytest.raises(UserError, match=r"client.cert: has no client.key beside it"):
        registry_certs("reg.test:5000")


def test_ssl_cert_file_and_dir(
    ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSBUILDER_CERTS_D", str(tmp_path / "none"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    assert _subjects(tls_context("r.test").get_ca_certs()) == {"trust unit CA"}
    monkeypatch.delenv("SSL_CERT_FILE")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "my-ca.pem").write_bytes(ca.path.read_bytes())  # no hashed names needed
    (folder / "README").write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_DIR", f"{tmp_path / 'missing'}:{folder}")
    subjects = _subjects(tls_context("r.test").get_ca_certs())
    assert "trust unit CA" in subjects and len(subjects) > 1  # certifi's bundle as well


def test_unusable_ssl_cert_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("no certificates here")
    monkeypatch.setenv("SSL_CERT_FILE", str(bad))
    with pytest.raises(UserError, match=r"\$SSL_CERT_FILE .*bad.pem.*no usable CA certificates"):
        tls_context("r.test")


def test_insecure_registries_are_not_verified() -> None:
    context = tls_context("r.test", verify=False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
