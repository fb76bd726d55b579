"""The local stack's optional TLS: a private CA and a broker certificate (openssl) for Kafka's SASL_SSL listener.

Made once per stack dir in `<stack>/kafka/tls/` (directory 0700, keys 0600): `ca.pem` is what clients trust
(`CES_KAFKA_SSL_CAFILE`), `broker.pem` is the broker's PEM keystore (its PKCS#8 key, its certificate, the CA).
The broker certificate names every host a client may dial (IP or DNS subjectAltName), since clients verify it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

from cesdev.stack import system
from cesdev.stack.system import StackError


def ensure_broker_pem(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """(CA certificate, broker keystore), created on first use; a certificate for other hosts is remade."""
    ca, keystore, names = directory / "ca.pem", directory / "broker.pem", directory / "hosts"
    wanted = ",".join(sorted(set(hosts)))
    if ca.exists() and keystore.exists() and names.exists() and names.read_text() == wanted:
        return ca, keystore
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("the Kafka TLS listener needs openssl (Debian package `openssl`)")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key, key, csr, crt, ext = (directory / n for n in ("ca.key", "broker.key", "broker.csr", "broker.crt", "ext"))
    old_umask = os.umask(0o077)
    try:
        if not (ca.exists() and ca_key.exists()):
            system.run(
                [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
                 "-days", "3650", "-subj", "/CN=CES local stack CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                what="creating the stack's CA",
            )  # fmt: skip
        san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in sorted(set(hosts)))
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        system.run(
            [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={hosts[0]}"],
            what="creating the broker's key",
        )  # fmt: skip
        system.run(
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "825", "-extfile", str(ext)],
            what="signing the broker's certificate",
        )  # fmt: skip
        # Kafka's PEM keystore: the (unencrypted PKCS#8) key, then the certificate chain.
        keystore.write_text(key.read_text() + crt.read_text() + ca.read_text())
        names.write_text(wanted)
    finally:
        os.umask(old_umask)
    for path in (ca_key, key, keystore):
        os.chmod(path, 0o600)
    return ca, keystore


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
