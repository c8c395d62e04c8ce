#!/usr/bin/env python3
"""Regenerates the test-only signing keys in this directory (private JWKs).

Needs the `cryptography` package. The keys are public on purpose: they sign
tokens in tests and benches only and must never be trusted anywhere else.
"""
import base64
import json
import pathlib

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives import serialization

HERE = pathlib.Path(__file__).parent


def b64(n: int, length: int | None = None) -> str:
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64_bytes(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwk(kid: str, bits: int) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = key.private_numbers()
    pub = priv.public_numbers
    return {
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(pub.n), "e": b64(pub.e), "d": b64(priv.d), "p": b64(priv.p),
        "q": b64(priv.q), "dp": b64(priv.dmp1), "dq": b64(priv.dmq1), "qi": b64(priv.iqmp),
    }


def p256_jwk(kid: str) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    priv = key.private_numbers()
    return {
        "kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
        "x": b64(priv.public_numbers.x, 32), "y": b64(priv.public_numbers.y, 32),
        "d": b64(priv.private_value, 32),
    }


def ed25519_jwk(kid: str) -> dict:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
            "x": b64_bytes(public), "d": b64_bytes(seed)}


KEYS = {
    "rsa-a": lambda: rsa_jwk("rsa-a", 2048),
    "rsa-b": lambda: rsa_jwk("rsa-b", 2048),
    "rsa-attacker": lambda: rsa_jwk("rsa-attacker", 2048),
    "rsa-weak-1024": lambda: rsa_jwk("rsa-weak-1024", 1024),
    "p256": lambda: p256_jwk("p256"),
    "ed25519": lambda: ed25519_jwk("ed25519"),
}

if __name__ == "__main__":
    for name, make in KEYS.items():
        (HERE / f"{name}.private.jwk.json").write_text(json.dumps(make(), indent=2) + "\n")
