"""Checks an X-Keygate-Identity token the way an upstream would, with a JWT
library that owes nothing to keygate: PyJWT (with `cryptography` for
Ed25519) fetches the JWKS, picks the key by the token's `kid`, verifies the
EdDSA signature and the expiry.

    python3 verify_jwt.py <jwks url> <token>

Prints one JSON line: {"ok": true, "kid": ..., "claims": {...}} or
{"ok": false, "error": "expired" | "<exception>: <message>"}.
"""
import json
import sys

import jwt

jwks_url, token = sys.argv[1], sys.argv[2]
try:
    key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], options={"require": ["exp", "iat", "sub"]})
    print(json.dumps({"ok": True, "kid": key.key_id, "claims": claims}))
except jwt.ExpiredSignatureError:
    print(json.dumps({"ok": False, "error": "expired"}))
except Exception as e:  # noqa: BLE001 - the test reads the reason
    print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
