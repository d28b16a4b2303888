"""Serving the app: uvicorn with TLS when asked (a self-signed certificate made once), and a shutdown
that sends Live sessions ``goAway`` before their sockets close."""

from __future__ import annotations

import datetime
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from localgem.settings import Settings

TLS_DIR = "tls"


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path
    created: bool = False  # made just now (self-signed)


def tls_certificate(settings: Settings) -> Certificate | None:
    """The certificate to serve with: the configured one, the self-signed one (``tls``), or none."""
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        raise ValueError("--certfile and --keyfile (tls_certfile, tls_keyfile) go together")
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        return Certificate(settings.tls_certfile, settings.tls_keyfile)
    if not settings.tls:
        return None
    folder = settings.data_dir / TLS_DIR
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return Certificate(cert, key)
    folder.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed(settings.host)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return Certificate(cert, key, created=True)


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for localhost, loopback and ``host``, that is its own CA: clients trust it by adding
    the file to their trust store (``SSL_CERT_FILE``, ``NODE_EXTRA_CA_CERTS``, ``curl --cacert``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"localgem on {socket.gethostname()}")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    hosts = {socket.gethostname()}
    if host not in ("0.0.0.0", "::", ""):
        try:
            addresses.add(str(ipaddress.ip_address(host)))
        except ValueError:
            hosts.add(host)
    names += [x509.DNSName(h) for h in sorted(hosts - {"localhost"})]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Server(uvicorn.Server):
    """uvicorn's server, telling Live sessions to go away (``goAway``) before it closes their sockets."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        live = getattr(getattr(app, "state", None), "live", None)
        if live is not None:
            await live.shutdown()
        await super().shutdown(sockets)


def server_config(
    app: FastAPI, settings: Settings, certificate: Certificate | None, **options: object
) -> uvicorn.Config:
    tls = {}
    if certificate is not None:
        tls = {"ssl_certfile": str(certificate.certfile), "ssl_keyfile": str(certificate.keyfile)}
    # uvicorn refuses larger frames itself (1009, no reason); above Live's own limit, so that ours speaks.
    ws_max_size = max(16 * 1024 * 1024, 2 * settings.live_max_message_bytes)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=ws_max_size,
        **tls,
        **options,  # type: ignore[arg-type]
    )
