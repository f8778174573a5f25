#!/usr/bin/python3
"""Cross-checks the zks crypto layer against independent implementations.

PyNaCl (libsodium's Python binding), Python's own hmac/hashlib/base64 and the
msgpack module rebuild every derivation, envelope, associated data and proof
from the specification in docs/PROTOCOL.md ("Sealed blob envelope") and docs/SECURITY.md, and
compare them with what the zks code produces through tool_crypto_vectors.
The sealed-blob test vector is read from docs/PROTOCOL.md ("Sealed blob envelope") itself, so
the document cannot drift from the code.
"""
import argparse
import base64
import hashlib
import hmac
import os
import re
import struct
import subprocess
import sys

import msgpack
import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash
import nacl.signing

PROTOCOL_VERSION = 1
AD_TAG = b"zks/v1/blob-ad"
PROOF_TAG = b"zks/v1/hello-proof"
KDF_SALT = b"zks/v1/hkdf-salt"
GROUP_ID_PREFIX = b"zks/v1/group-id"
# The vector lives in the envelope section, which is also pasted into PROTOCOL.md;
# every copy found is checked.
DOCS = [os.path.join("docs", "PROTOCOL.md")]
VECTOR_MARKER = "<!-- sealed-blob-vector -->"
SECURITY_DOC = os.path.join("docs", "SECURITY.md")
PROOF_MARKER = "<!-- hello-proof-vector -->"


class Checker:
    def __init__(self, tool):
        self.tool = tool
        self.passed = 0
        self.failed = 0

    def run(self, *args, stdin=None, ok=True):
        """Runs the tool; returns (exit code, stdout)."""
        proc = subprocess.run([self.tool, *args], input=stdin, capture_output=True, text=True)
        if proc.returncode == 2:
            raise RuntimeError("tool usage error: %s %s" % (args[:1], proc.stderr.strip()))
        return proc.returncode, proc.stdout.strip()

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail))

    def equal(self, name, got, want):
        self.check(name, got == want, "\n  got  %r\n  want %r" % (got, want))


# --- The specification, written out independently of the C code. ---------------------------

def hkdf_sha256(ikm, salt, info, length=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def derive(secret):
    blob_key = hkdf_sha256(secret, KDF_SALT, b"zks/v1/blob-key")
    auth_seed = hkdf_sha256(secret, KDF_SALT, b"zks/v1/group-auth-seed")
    content = hkdf_sha256(secret, KDF_SALT, b"zks/v1/content-key-base")
    signing = nacl.signing.SigningKey(auth_seed)
    auth_pk = bytes(signing.verify_key)
    group_id = hashlib.blake2b(GROUP_ID_PREFIX + auth_pk, digest_size=32).digest()
    return {
        "secret": secret,
        "blob_key": blob_key,
        "auth_seed": auth_seed,
        "content_key_base": content,
        "auth_pk": auth_pk,
        "group_id": group_id,
        "signing": signing,
    }


def blob_ad(epoch, group_id, blob_id, sender, version=PROTOCOL_VERSION, tag=AD_TAG):
    assert len(group_id) == 32 and len(blob_id) == 16 and len(sender) == 32
    return tag + struct.pack(">II", version, epoch) + group_id + blob_id + sender


def record_bytes(kind, ts, data, extra=None):
    fields = {0: kind, 1: ts, 2: data}
    if extra:
        fields.update(extra)
    return msgpack.packb(fields, use_bin_type=True)


def py_seal(key, nonce, ad, record, epoch):
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(record, ad, nonce, key)
    return msgpack.packb({0: 1, 1: epoch, 2: nonce, 3: ct}, use_bin_type=True)


def proof_message(group_id, device, cb):
    return PROOF_TAG + group_id + device + bytes([len(cb)]) + cb


def b32_text(b):
    return base64.b32encode(b).decode("ascii").lower().rstrip("=")


def parse_kv(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def rnd(n):
    return os.urandom(n)


# --- The checks. ------------------------------------------------------------------------------

def check_derivations(c):
    secrets = [bytes(range(32)), bytes(32), b"\xff" * 32] + [rnd(32) for _ in range(3)]
    for secret in secrets:
        want = derive(secret)
        rc, out = c.run("derive", secret.hex())
        got = parse_kv(out)
        for field in ("secret", "blob_key", "auth_seed", "content_key_base", "auth_pk", "group_id"):
            name = "derive %s of %s" % (field, secret.hex()[:8])
            c.equal(name, got.get(field), want[field].hex())
    # The labels give distinct keys.
    want = derive(rnd(32))
    keys = [want[k] for k in ("blob_key", "auth_seed", "content_key_base")]
    c.check("distinct derived keys", len(set(keys)) == 3)


def check_argon2id(c):
    cases = [
        (b"correct horse battery staple", bytes(range(16)), 2, 65536),
        ("gr\u00fcn \u00e9t\u00e9 \u2603".encode("utf-8"), rnd(16), 1, 8192),
        (b"x", rnd(16), 3, 1 << 20),
    ]
    for pw, salt, ops, mem in cases:
        want = nacl.pwhash.argon2id.kdf(32, pw, salt, opslimit=ops, memlimit=mem)
        rc, out = c.run("pwhash", pw.hex(), salt.hex(), str(ops), str(mem))
        got = parse_kv(out)
        c.equal("argon2id secret ops=%d mem=%d" % (ops, mem), got.get("secret"), want.hex())
        c.equal("argon2id group_id ops=%d mem=%d" % (ops, mem), got.get("group_id"),
                derive(want)["group_id"].hex())
    # Absurd parameters are refused.
    for ops, mem in ((0, 65536), (65, 65536), (2, 4096), (2, 65537), (2, (4 << 30) + 1024)):
        rc, out = c.run("pwhash", b"pw".hex(), bytes(16).hex(), str(ops), str(mem))
        c.equal("argon2id refuses ops=%d mem=%d" % (ops, mem), (rc, out), (1, "error ZKS_EINVAL"))


def check_zks_seals(c):
    secret = rnd(32)
    for epoch in (0, 1, 300, 2**32 - 1):
        g = derive(secret)
        for size in (0, 1, 127, 1024, 65535, 70000):
            nonce, blob_id, sender, data = rnd(24), rnd(16), rnd(32), rnd(size)
            kind, ts = size * 7 + epoch % 5, 1700000000000 + size
            rc, env_hex = c.run("seal", secret.hex(), str(epoch), nonce.hex(), blob_id.hex(),
                                sender.hex(), str(kind), str(ts), "-", stdin=data.hex() + "\n")
            name = "zks seal epoch=%d size=%d" % (epoch, size)
            c.equal(name + " exit", rc, 0)
            env = bytes.fromhex(env_hex)
            # msgpack decodes the envelope field by field.
            fields = msgpack.unpackb(env, strict_map_key=False, raw=False)
            c.equal(name + " envelope keys", list(fields.keys()), [0, 1, 2, 3])
            c.equal(name + " version", fields[0], 1)
            c.equal(name + " epoch", fields[1], epoch)
            c.equal(name + " nonce", fields[2], nonce)
            c.check(name + " ciphertext is bin", isinstance(fields[3], bytes))
            # PyNaCl decrypts with the AD Python builds from the spec.
            ad = blob_ad(epoch, g["group_id"], blob_id, sender)
            record = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(fields[3], ad, nonce,
                                                                       g["blob_key"])
            rec = msgpack.unpackb(record, strict_map_key=False, raw=False)
            c.equal(name + " record keys", list(rec.keys()), [0, 1, 2])
            c.equal(name + " kind", rec[0], kind)
            c.equal(name + " ts", rec[1], ts)
            c.check(name + " data", isinstance(rec[2], bytes) and rec[2] == data)
            # Byte for byte what msgpack would encode for the same values.
            c.equal(name + " record bytes", record, record_bytes(kind, ts, data))
            c.equal(name + " envelope bytes", env, py_seal(g["blob_key"], nonce, ad, record, epoch))


def tool_open(c, secret, epoch, blob_id, sender, env):
    return c.run("open", secret.hex(), str(epoch), blob_id.hex(), sender.hex(), "-",
                 stdin=env.hex() + "\n")


def check_python_seals(c):
    secret = rnd(32)
    g = derive(secret)
    for epoch in (0, 5):
        for size in (0, 3, 1000, 65536, 200000):
            nonce, blob_id, sender, data = rnd(24), rnd(16), rnd(32), rnd(size)
            kind, ts = 2**64 - 1 - size, size
            ad = blob_ad(epoch, g["group_id"], blob_id, sender)
            env = py_seal(g["blob_key"], nonce, ad, record_bytes(kind, ts, data), epoch)
            rc, out = tool_open(c, secret, epoch, blob_id, sender, env)
            name = "zks opens python seal epoch=%d size=%d" % (epoch, size)
            c.equal(name + " exit", rc, 0)
            got = parse_kv(out)
            c.equal(name + " kind", got.get("kind"), str(kind))
            c.equal(name + " ts", got.get("ts"), str(ts))
            c.check(name + " data", got.get("data") == data.hex())
    # A record with a field a later version might add is still read.
    nonce, blob_id, sender = rnd(24), rnd(16), rnd(32)
    ad = blob_ad(0, g["group_id"], blob_id, sender)
    env = py_seal(g["blob_key"], nonce, ad, record_bytes(9, 8, b"ext", {7: [1, "x"]}), 0)
    rc, out = tool_open(c, secret, 0, blob_id, sender, env)
    c.equal("zks skips unknown record field", (rc, parse_kv(out).get("data")), (0, b"ext".hex()))


def check_refusals(c):
    secret, other = rnd(32), rnd(32)
    g, o = derive(secret), derive(other)
    nonce, blob_id, sender = rnd(24), rnd(16), rnd(32)
    record = record_bytes(1, 2, b"attack at dawn")
    ad = blob_ad(0, g["group_id"], blob_id, sender)
    env = py_seal(g["blob_key"], nonce, ad, record, 0)
    rc, _ = tool_open(c, secret, 0, blob_id, sender, env)
    c.equal("refusal baseline opens", rc, 0)
    auth = (1, "error ZKS_EAUTH")
    # Tampered bytes: every nonce and ciphertext byte.
    ct_at = len(env) - (len(record) + 16)
    for i in list(range(8, 32)) + list(range(ct_at, len(env))):
        bad = bytearray(env)
        bad[i] ^= 0x01
        c.equal("tampered byte %d" % i, tool_open(c, secret, 0, blob_id, sender, bytes(bad)), auth)
    # Wrong AD, field by field.
    c.equal("other blob_id", tool_open(c, secret, 0, rnd(16), sender, env), auth)
    c.equal("other sender", tool_open(c, secret, 0, blob_id, rnd(32), env), auth)
    c.equal("other group", tool_open(c, other, 0, blob_id, sender, env), auth)
    c.equal("other epoch", tool_open(c, secret, 1, blob_id, sender, env), auth)
    for name, bad_ad in (
        ("AD with another group_id", blob_ad(0, o["group_id"], blob_id, sender)),
        ("AD with protocol version 2", blob_ad(0, g["group_id"], blob_id, sender, version=2)),
        ("AD with epoch 1 under envelope epoch 0", blob_ad(1, g["group_id"], blob_id, sender)),
        ("AD with another tag", blob_ad(0, g["group_id"], blob_id, sender, tag=b"zks/v1/blob-AD")),
    ):
        bad = py_seal(g["blob_key"], nonce, bad_ad, record, 0)
        c.equal(name, tool_open(c, secret, 0, blob_id, sender, bad), auth)
    # The right AD under the wrong key.
    bad = py_seal(o["blob_key"], nonce, ad, record, 0)
    c.equal("wrong key", tool_open(c, secret, 0, blob_id, sender, bad), auth)
    # Structural refusals.
    c.equal("truncated", tool_open(c, secret, 0, blob_id, sender, env[:-1]),
            (1, "error ZKS_ETRUNCATED"))
    c.equal("trailing byte", tool_open(c, secret, 0, blob_id, sender, env + b"\xc0"),
            (1, "error ZKS_EMALFORMED"))
    v2 = msgpack.packb({0: 2, 1: 0, 2: nonce, 3: b"x" * 32}, use_bin_type=True)
    c.equal("version 2", tool_open(c, secret, 0, blob_id, sender, v2),
            (1, "error ZKS_EUNSUPPORTED"))
    big = msgpack.packb({0: 1, 1: 0, 2: nonce, 3: bytes(1 << 20)}, use_bin_type=True)
    c.equal("oversize", tool_open(c, secret, 0, blob_id, sender, big), (1, "error ZKS_ETOOBIG"))
    # Authentic but not a record.
    bad = py_seal(g["blob_key"], nonce, ad, msgpack.packb([1, 2, b"x"], use_bin_type=True), 0)
    c.equal("authentic non-record", tool_open(c, secret, 0, blob_id, sender, bad),
            (1, "error ZKS_EMALFORMED"))


def check_proofs(c):
    secret = rnd(32)
    g, o = derive(secret), derive(rnd(32))
    for cb_len in (1, 32, 64):
        cb, device = rnd(cb_len), rnd(32)
        msg = proof_message(g["group_id"], device, cb)
        rc, proof_hex = c.run("prove", secret.hex(), cb.hex(), device.hex())
        try:
            g["signing"].verify_key.verify(msg, bytes.fromhex(proof_hex))
            ok = True
        except (nacl.exceptions.BadSignatureError, ValueError):
            ok = False
        c.check("PyNaCl verifies zks proof cb=%d" % cb_len, rc == 0 and ok)
        # PyNaCl signs; zks verifies with public values only.
        proof = g["signing"].sign(msg).signature
        gid, gpk = g["group_id"].hex(), g["auth_pk"].hex()
        c.equal("zks verifies PyNaCl proof cb=%d" % cb_len,
                c.run("verify", gid, gpk, cb.hex(), device.hex(), proof.hex()), (0, "ok"))
        auth = (1, "error ZKS_EAUTH")
        bad_cb = bytes([cb[0] ^ 1]) + cb[1:]
        c.equal("wrong channel binding", c.run("verify", gid, gpk, bad_cb.hex(), device.hex(),
                                               proof.hex()), auth)
        c.equal("wrong device", c.run("verify", gid, gpk, cb.hex(), rnd(32).hex(), proof.hex()),
                auth)
        c.equal("wrong group_id", c.run("verify", o["group_id"].hex(), gpk, cb.hex(),
                                        device.hex(), proof.hex()), auth)
        c.equal("wrong group_pk", c.run("verify", gid, o["auth_pk"].hex(), cb.hex(),
                                        device.hex(), proof.hex()), auth)
        bad_proof = bytearray(proof)
        bad_proof[10] ^= 4
        c.equal("wrong proof", c.run("verify", gid, gpk, cb.hex(), device.hex(),
                                     bytes(bad_proof).hex()), auth)
        other_proof = o["signing"].sign(msg).signature
        c.equal("proof by another group", c.run("verify", gid, gpk, cb.hex(), device.hex(),
                                                other_proof.hex()), auth)
        # An attacker's own key, presented as the group key: its signature is valid, but
        # the group_id is not the hash of the attacker's key.
        c.equal("attacker key for this group_id", c.run("verify", gid, o["auth_pk"].hex(),
                                                        cb.hex(), device.hex(),
                                                        other_proof.hex()), auth)
    c.equal("channel binding too long", c.run("prove", secret.hex(), rnd(65).hex(), rnd(32).hex()),
            (1, "error ZKS_EINVAL"))


def check_nodeids(c):
    values = [bytes(32), b"\xff" * 32] + [rnd(32) for _ in range(8)]
    for v in values:
        text = b32_text(v)
        c.equal("nodeid text %s" % v.hex()[:8], c.run("nodeid-text", v.hex()), (0, text))
        c.equal("nodeid parse lower", c.run("nodeid-parse", text), (0, v.hex()))
        c.equal("nodeid parse upper", c.run("nodeid-parse", text.upper()), (0, v.hex()))
        c.equal("nodeid parse hex", c.run("nodeid-parse", v.hex().upper()), (0, v.hex()))
    bad = (1, "error ZKS_EMALFORMED")
    for s in (b32_text(rnd(32))[:-1], b32_text(rnd(32)) + "a", base64.b32encode(rnd(32)).decode(),
              rnd(32).hex()[:-1], "0" * 52, "1" * 52, "g" * 64, "7" * 51 + "r"):
        c.equal("nodeid refuses %r" % s, c.run("nodeid-parse", s), bad)


def read_doc_vector(text, path, marker=VECTOR_MARKER):
    """The `name = value` lines of the fenced block after a test-vector marker."""
    m = re.search(re.escape(marker) + r"\s*```[a-z]*\n(.*?)```", text, re.S)
    if not m:
        raise RuntimeError("no test vector after %s in %s" % (marker, path))
    values, last = {}, None
    for line in m.group(1).splitlines():
        kv = re.match(r"^([a-z_]+)\s*=\s*([0-9a-f]*)\s*$", line)
        if kv:
            last = kv.group(1)
            values[last] = kv.group(2)
        elif re.match(r"^\s+[0-9a-f]+\s*$", line) and last:
            values[last] += line.strip()
        elif line.strip():
            raise RuntimeError("unexpected line in the test vector: %r" % line)
    return values


def check_doc_vectors(c):
    found = 0
    for path in DOCS:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if VECTOR_MARKER not in text:
            continue
        found += 1
        check_doc_vector(c, read_doc_vector(text, path), path)
    c.check("a sealed-blob test vector is documented", found > 0, "in any of %s" % DOCS)


def check_doc_vector(c, v, path):
    b = {k: bytes.fromhex(x) for k, x in v.items() if k not in ("epoch", "kind", "app_ts")}
    epoch, kind, ts = int(v["epoch"]), int(v["kind"]), int(v["app_ts"])
    g = derive(b["secret"])
    doc = os.path.basename(path)
    c.equal(doc + " blob_key", b["blob_key"], g["blob_key"])
    c.equal(doc + " auth_pk", b["auth_pk"], g["auth_pk"])
    c.equal(doc + " group_id", b["group_id"], g["group_id"])
    ad = blob_ad(epoch, g["group_id"], b["blob_id"], b["sender"])
    c.equal(doc + " associated data", b["ad"], ad)
    rec = record_bytes(kind, ts, b["plaintext"])
    c.equal(doc + " record", b["record"], rec)
    env = py_seal(g["blob_key"], b["nonce"], ad, rec, epoch)
    c.equal(doc + " envelope (PyNaCl + msgpack)", b["envelope"], env)
    rc, out = c.run("seal", b["secret"].hex(), str(epoch), b["nonce"].hex(), b["blob_id"].hex(),
                    b["sender"].hex(), str(kind), str(ts), b["plaintext"].hex())
    c.equal(doc + " envelope (zks)", out, b["envelope"].hex())
    rc, out = tool_open(c, b["secret"], epoch, b["blob_id"], b["sender"], b["envelope"])
    c.equal(doc + " zks opens doc envelope", parse_kv(out).get("data"), b["plaintext"].hex())


def check_proof_vector(c):
    with open(SECURITY_DOC, encoding="utf-8") as f:
        v = {k: bytes.fromhex(x) for k, x in read_doc_vector(f.read(), SECURITY_DOC,
                                                             PROOF_MARKER).items()}
    g = derive(v["secret"])
    for field in ("auth_seed", "auth_pk", "group_id"):
        c.equal("SECURITY.md proof vector " + field, v[field], g[field])
    msg = proof_message(g["group_id"], v["device"], v["binding"])
    c.equal("SECURITY.md proof message", v["message"], msg)
    c.equal("SECURITY.md proof (PyNaCl)", v["proof"], g["signing"].sign(msg).signature)
    c.equal("SECURITY.md proof (zks)",
            c.run("prove", v["secret"].hex(), v["binding"].hex(), v["device"].hex()),
            (0, v["proof"].hex()))
    c.equal("SECURITY.md proof verifies (zks)",
            c.run("verify", v["group_id"].hex(), v["auth_pk"].hex(), v["binding"].hex(),
                  v["device"].hex(), v["proof"].hex()), (0, "ok"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    tool = os.path.join(args.build_dir, "tool_crypto_vectors")
    if not os.access(tool, os.X_OK):
        print("missing %s: build the tool_crypto_vectors target first" % tool)
        return 1
    c = Checker(tool)
    steps = (check_derivations, check_argon2id, check_zks_seals, check_python_seals,
             check_refusals, check_proofs, check_nodeids, check_doc_vectors, check_proof_vector)
    for step in steps:
        try:
            step(c)
        except Exception as e:  # a crash in one step is a failure, not an abort
            c.failed += 1
            print("FAIL %s raised %s: %s" % (step.__name__, type(e).__name__, e))
    print("%d passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
