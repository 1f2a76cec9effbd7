"""Throwaway certificates for the TLS tests, made at test time with ``cryptography``.

:func:`make_pki` writes into a directory a test CA, a server certificate signed by it (for
``server.test`` and the server's address), a client certificate (for mutual TLS) and, as the
"unknown CA" case, a second CA with a server certificate of its own.  Keys are P-256: quick to
make, and every TLS version the tests use accepts them.
"""
import datetime
import ipaddress
import os
from types import SimpleNamespace

SERVER_NAME = "server.test"


def _name(common_name):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lwstack tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject, key, issuer, issuer_key, *, ca=False, names=(), addresses=(),
                 client=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                        critical=False)
    else:
        alt = [x509.DNSName(n) for n in names] + \
              [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory, stem, cert, key):
    from cryptography.hazmat.primitives import serialization
    cert_path = os.path.join(directory, stem + ".pem")
    key_path = os.path.join(directory, stem + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(directory, server_addresses=()):
    """Write the certificates into ``directory``; return their paths as attributes:
    ``ca``, ``server_cert``/``server_key``, ``client_cert``/``client_key``, ``other_ca``,
    ``rogue_cert``/``rogue_key`` (a server certificate for the same names from the other CA)."""
    paths = SimpleNamespace()
    for prefix in ("", "other_"):
        ca_key = _key()
        ca_name = _name(f"lwstack {prefix}test CA")
        ca_cert = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
        setattr(paths, prefix + "ca", _write(directory, prefix + "ca", ca_cert, ca_key)[0])
        key = _key()
        cert = _certificate(_name(SERVER_NAME), key, ca_name, ca_key,
                            names=[SERVER_NAME, "localhost"], addresses=server_addresses)
        stem = "server" if not prefix else "rogue"
        cert_path, key_path = _write(directory, stem, cert, key)
        setattr(paths, stem + "_cert", cert_path)
        setattr(paths, stem + "_key", key_path)
        if not prefix:
            key = _key()
            cert = _certificate(_name("client.test"), key, ca_name, ca_key, client=True)
            paths.client_cert, paths.client_key = _write(directory, "client", cert, key)
    return paths
