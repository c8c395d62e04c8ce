#!/usr/bin/env python3
"""Mints JWTs with PyJWT (and `cryptography`) for the gateway's interop test.

    pyjwt_tokens.py ISSUER AUDIENCE

Prints one JSON object:
  {"jwks": {...},                       # the public keys the issuer publishes
   "accepted": [{"name", "token"}],     # must pass
   "rejected": [{"name", "token", "reason"}]}   # must be refused (401);
                                        # reason: the gateway's log detail
Keys are generated afresh on each run: an RSA-2048 and a P-256 key that the
JWKS publishes, and an attacker's RSA and P-256 keys that it does not.

Tokens are Cognito-shaped: ID tokens (token_use "id", aud = the app client)
and access tokens (token_use "access", client_id, no aud). Where PyJWT
refuses to mint an attack (HS256 keyed with an RSA public key PEM), the
token is assembled by hand with the same base64url and HMAC primitives.
"""
import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

issuer, audience = sys.argv[1], sys.argv[2]
now = int(time.time())

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
attacker_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
attacker_ec = ec.generate_private_key(ec.SECP256R1())
RSA_KID, EC_KID = "pyjwt-rsa", "pyjwt-ec"


def public_jwk(key, kid, alg):
    algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


jwks = {"keys": [public_jwk(rsa_key, RSA_KID, "RS256"), public_jwk(ec_key, EC_KID, "ES256")]}


def claims_of(sub, kind, changes):
    """Cognito-shaped claims of `sub`, valid for an hour, with the members
    of `kind` and then `changes` (None removes a member)."""
    claims = {"sub": sub, "iss": issuer, **kind, "auth_time": now - 5, "iat": now - 5, "exp": now + 3600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def id_claims(sub, **changes):
    kind = {"aud": audience, "token_use": "id", "cognito:username": sub, "email": f"{sub}@example.com"}
    return claims_of(sub, kind, changes)


def access_claims(sub, **changes):
    kind = {"client_id": audience, "token_use": "access", "scope": "openid email", "username": sub}
    return claims_of(sub, kind, changes)


def rs256(claims, kid=RSA_KID, key=rsa_key, **headers):
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, **headers})


def es256(claims, kid=EC_KID, key=ec_key, **headers):
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, **headers})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def flip_signature_bit(token: str) -> str:
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


def alter_claims(token: str, **changes) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{head}.{b64json(claims)}.{signature}"


def hs256_with_public_pem() -> str:
    # The classic key-confusion attack: HMAC keyed with the RSA public key.
    # PyJWT itself refuses a PEM as an HMAC secret (InvalidKeyError).
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': RSA_KID})}.{b64json(id_claims('hs256'))}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


good_rs256 = rs256(id_claims("pyjwt-rs256-id"))
accepted = {
    "rs256_id_token": good_rs256,
    "rs256_access_token": rs256(access_claims("pyjwt-rs256-access")),
    "es256_id_token": es256(id_claims("pyjwt-es256-id")),
    "es256_access_token": es256(access_claims("pyjwt-es256-access")),
    "rs256_aud_array": rs256(id_claims("pyjwt-aud-array", aud=["another-client", audience])),
}

attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker_rsa.public_key()))
rejected = [
    ("alg_none", jwt.encode(id_claims("none"), None, algorithm="none"), "alg_none"),
    ("hs256_keyed_with_rsa_public_pem", hs256_with_public_pem(), "symmetric_algorithm"),
    ("expired", rs256(id_claims("expired", iat=now - 7200, auth_time=now - 7200, exp=now - 3600)), "expired"),
    ("not_yet_valid", rs256(id_claims("nbf", nbf=now + 3600)), "not_yet_valid"),
    ("no_exp", rs256(id_claims("no-exp", exp=None)), "missing_exp"),
    ("wrong_issuer", rs256(id_claims("iss", iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")), "wrong_issuer"),
    ("wrong_audience", rs256(id_claims("aud", aud="another-client")), "wrong_audience"),
    ("wrong_client_id", rs256(access_claims("client-id", client_id="another-client")), "wrong_client_id"),
    ("refresh_token_use", rs256(id_claims("refresh", token_use="refresh")), "wrong_token_use"),
    ("unknown_kid", rs256(id_claims("kid"), kid="pyjwt-unknown", key=attacker_rsa), "unknown_kid"),
    ("other_rsa_key_same_kid", rs256(id_claims("forged"), key=attacker_rsa), "bad_signature"),
    ("other_ec_key_same_kid", es256(id_claims("forged-ec"), key=attacker_ec), "bad_signature"),
    ("es256_under_the_rsa_kid", es256(id_claims("mismatch"), kid=RSA_KID), "algorithm_mismatch"),
    (
        "embedded_jwk_header",
        rs256(id_claims("jwk"), kid="attacker", key=attacker_rsa, jwk=attacker_jwk),
        "embedded_key_header",
    ),
    ("jku_header", rs256(id_claims("jku"), jku="https://attacker.example.com/jwks.json"), "jku_header"),
    ("x5u_header", rs256(id_claims("x5u"), x5u="https://attacker.example.com/cert.pem"), "x5u_header"),
    ("crit_header", rs256(id_claims("crit"), crit=["exp"]), "critical_header"),
    ("bit_flipped_signature", flip_signature_bit(good_rs256), "bad_signature"),
    ("altered_claims", alter_claims(good_rs256, sub="admin"), "bad_signature"),
    ("altered_expiry", alter_claims(good_rs256, exp=now + 10 * 365 * 86400), "bad_signature"),
    ("oversized", rs256(id_claims("big", padding="x" * 17000)), "token_too_large"),
]

json.dump(
    {
        "jwks": jwks,
        "accepted": [{"name": name, "token": token} for name, token in accepted.items()],
        "rejected": [{"name": name, "token": token, "reason": reason} for name, token, reason in rejected],
    },
    sys.stdout,
)
