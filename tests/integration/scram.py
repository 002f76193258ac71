"""A small SCRAM client (RFC 5802, RFC 7677) for the integration tests, with
channel binding (RFC 5929 tls-server-end-point, RFC 9266 tls-exporter data
supplied by the caller) and a helper computing tls-server-end-point data from
the server certificate."""
import base64
import hashlib
import hmac
import os

HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class ScramError(Exception):
    pass


def _b64(b):
    return base64.b64encode(b).decode("ascii")


def saslname(s):
    """RFC 5802 §5.1: '=' and ',' in a username are escaped."""
    return s.replace("=", "=3D").replace(",", "=2C")


def parse_attrs(msg):
    out = {}
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError(f"bad SCRAM attribute {part!r} in {msg!r}")
        out[part[0]] = part[2:]
    return out


class ScramClient:
    """One SCRAM exchange. mechanism is e.g. 'SCRAM-SHA-256' or 'SCRAM-SHA-256-PLUS'.

    For -PLUS pass cb_type ('tls-server-end-point' or 'tls-exporter') and cb_data.
    Without -PLUS the GS2 flag is 'n' (or 'y' when client_supports_cb=True).
    """

    def __init__(self, mechanism, username, password, authzid=None,
                 cb_type=None, cb_data=None, client_supports_cb=False, nonce=None):
        base = mechanism[:-5] if mechanism.endswith("-PLUS") else mechanism
        if base not in HASHES:
            raise ValueError(mechanism)
        self.plus = mechanism.endswith("-PLUS")
        self.hash = HASHES[base]
        self.username = username
        self.password = password.encode("utf-8")
        self.nonce = nonce or _b64(os.urandom(18))
        if self.plus:
            assert cb_type and cb_data is not None
            flag = f"p={cb_type}"
        else:
            flag = "y" if client_supports_cb else "n"
        self.gs2_header = f"{flag},{'a=' + saslname(authzid) if authzid else ''},"
        self.cb_data = cb_data if self.plus else b""
        self.client_first_bare = f"n={saslname(username)},r={self.nonce}"
        self.server_signature = None

    def client_first(self):
        return (self.gs2_header + self.client_first_bare).encode("utf-8")

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.hash).digest()

    def client_final(self, server_first):
        """Process server-first-message (bytes); returns client-final-message (bytes)."""
        sf = server_first.decode("utf-8")
        attrs = parse_attrs(sf)
        if "m" in attrs:
            raise ScramError("mandatory extension in server-first")
        nonce, salt, iters = attrs.get("r"), attrs.get("s"), attrs.get("i")
        if nonce is None or salt is None or iters is None:
            raise ScramError(f"incomplete server-first {sf!r}")
        if not nonce.startswith(self.nonce) or len(nonce) <= len(self.nonce):
            raise ScramError("server nonce does not extend the client nonce")
        iters = int(iters)
        if iters < 1:
            raise ScramError("bad iteration count")
        salted = hashlib.pbkdf2_hmac(self.hash, self.password, base64.b64decode(salt), iters)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        cbind = _b64(self.gs2_header.encode("utf-8") + self.cb_data)
        without_proof = f"c={cbind},r={nonce}"
        auth_message = f"{self.client_first_bare},{sf},{without_proof}".encode("utf-8")
        client_sig = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        server_key = self._hmac(salted, b"Server Key")
        self.server_signature = self._hmac(server_key, auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("utf-8")

    def verify_server_final(self, server_final):
        """Raises ScramError unless server-final carries the expected v= signature."""
        attrs = parse_attrs(server_final.decode("utf-8"))
        if "e" in attrs:
            raise ScramError(f"server-final error {attrs['e']}")
        if "v" not in attrs:
            raise ScramError("server-final without verifier")
        if not hmac.compare_digest(base64.b64decode(attrs["v"]), self.server_signature):
            raise ScramError("server signature mismatch")


# --- tls-server-end-point (RFC 5929 §4.1) --------------------------------

def _der_item(data, pos):
    """Returns (tag, content_start, content_end) of the DER item at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


_SIG_OID_HASH = {
    # sha384/sha512 with RSA, RSASSA-PSS is left to the default (sha256)
    bytes.fromhex("2a864886f70d01010c"): "sha384",
    bytes.fromhex("2a864886f70d01010d"): "sha512",
    bytes.fromhex("2a8648ce3d040303"): "sha384",   # ecdsa-with-SHA384
    bytes.fromhex("2a8648ce3d040304"): "sha512",   # ecdsa-with-SHA512
}


def cert_signature_hash(der):
    """Hash named by the certificate's signatureAlgorithm, per RFC 5929 §4.1
    (MD5/SHA-1 and unknown → SHA-256)."""
    _, start, _ = _der_item(der, 0)            # Certificate SEQUENCE
    _, _, tbs_end = _der_item(der, start)      # tbsCertificate
    _, alg_start, _ = _der_item(der, tbs_end)  # signatureAlgorithm SEQUENCE
    tag, oid_start, oid_end = _der_item(der, alg_start)
    if tag != 0x06:
        return "sha256"
    return _SIG_OID_HASH.get(der[oid_start:oid_end], "sha256")


def tls_server_end_point(sslsock):
    """Channel-binding data for tls-server-end-point from a connected SSLSocket."""
    der = sslsock.getpeercert(binary_form=True)
    return hashlib.new(cert_signature_hash(der), der).digest()
