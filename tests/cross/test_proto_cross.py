#!/usr/bin/python3
"""Cross-implementation test of the zks message encoding.

Python's msgpack package, an implementation independent of ours, referees
three things:

1. Every test vector that tool_proto_vectors encodes decodes here to the
   fields and values the specification below lists, with ascending keys,
   optional fields at their default left out, and the same bytes Python's own
   (shortest-form) encoder produces.
2. docs/PROTOCOL.md: each hex vector equals what the encoder produces, every
   vector appears there, and each field table agrees with the specification
   below, so the document cannot drift from the code.
3. Messages built here, including unknown fields, wider-than-needed integers
   and keys out of order, decode in zks to the right fields; broken ones are
   refused with the right error.

Run from the repository root: test_proto_cross.py --build-dir BUILD.
--emit-vectors prints the vector blocks of docs/PROTOCOL.md instead.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import msgpack

# ---------------------------------------------------------------------------
# The specification: (key, name, kind, required, limit). Kinds: uint, code
# (uint up to 2^32-1), kind (uint 0..2), bool, fixed (bin of exactly `limit`
# bytes), bin and str (at most `limit` bytes), blobs, devices and members
# (arrays of at most `limit` item maps).

MAX_BLOB = 1024 * 1024

BLOB_ITEM = [
    (1, "blob_id", "fixed", True, 16),
    (2, "cursor", "uint", True, None),
    (3, "sender", "fixed", True, 32),
    (4, "time", "uint", True, None),
    (5, "envelope", "bin", True, MAX_BLOB),
    (6, "kind", "kind", False, None),
    (7, "hash", "fixed", False, 32),
    (8, "size", "uint", False, None),
]

DEVICE_ITEM = [
    (1, "device_id", "fixed", True, 32),
    (2, "name", "str", True, 256),
    (3, "last_seen", "uint", True, None),
    (4, "online", "bool", True, None),
    (5, "pending", "uint", True, None),
    (6, "revoked", "bool", False, None),
]

MEMBER_ITEM = [
    (1, "device_id", "fixed", True, 32),
]

ITEMS = {"blobs": BLOB_ITEM, "devices": DEVICE_ITEM, "members": MEMBER_ITEM}
ITEM_TABLES = {"Blob item": BLOB_ITEM, "Device item": DEVICE_ITEM, "Member item": MEMBER_ITEM}

SPEC = {
    "HELLO": (1, [
        (1, "version", "uint", True, None),
        (2, "group_id", "fixed", True, 32),
        (3, "group_pk", "fixed", True, 32),
        (4, "proof", "fixed", True, 64),
        (5, "device_name", "str", True, 256),
        (6, "last_cursor", "uint", False, None),
        (7, "auth", "bin", False, 4096),
        (8, "client_time", "uint", False, None),
        (9, "members", "members", False, 1000),
    ]),
    "WELCOME": (2, [
        (1, "relay_id", "fixed", True, 32),
        (2, "max_cursor", "uint", True, None),
        (3, "pending", "uint", True, None),
        (4, "server_time", "uint", True, None),
        (5, "max_blob", "uint", False, None),
        (6, "pull_limit", "uint", False, None),
    ]),
    "PUSH": (3, [
        (1, "blob_id", "fixed", True, 16),
        (2, "envelope", "bin", True, MAX_BLOB),
        (3, "ttl", "uint", False, None),
    ]),
    "PUSH_ACK": (4, [
        (1, "blob_id", "fixed", True, 16),
        (2, "cursor", "uint", True, None),
        (3, "server_time", "uint", True, None),
        (4, "duplicate", "bool", False, None),
    ]),
    "PULL": (5, [
        (1, "after", "uint", True, None),
        (2, "limit", "uint", False, None),
        (3, "peek", "bool", False, None),
    ]),
    "PULL_RESPONSE": (6, [
        (1, "blobs", "blobs", True, 1000),
        (2, "has_more", "bool", True, None),
        (3, "max_cursor", "uint", True, None),
    ]),
    "NOTIFY": (7, [
        (1, "blob_id", "fixed", True, 16),
        (2, "cursor", "uint", True, None),
        (3, "sender", "fixed", True, 32),
        (4, "size", "uint", True, None),
        (5, "time", "uint", True, None),
        (6, "kind", "kind", False, None),
        (7, "envelope", "bin", False, MAX_BLOB),
    ]),
    "PRESENCE": (8, [(1, "status", "str", False, 64)]),
    "DELETE": (9, [
        (1, "blob_id", "fixed", True, 16),
        (2, "force", "bool", False, None),
    ]),
    "REVOKE_DEVICE": (10, [(1, "device_id", "fixed", True, 32)]),
    "DEVICE_REVOKED": (11, [(1, "device_id", "fixed", True, 32)]),
    "REGISTER_PUSH": (12, [
        (1, "platform", "str", True, 32),
        (2, "token", "str", True, 4096),
    ]),
    "UNREGISTER_PUSH": (13, [(1, "token", "str", False, 4096)]),
    "CONTENT_REF": (14, [
        (1, "ref_id", "fixed", True, 16),
        (2, "hash", "fixed", True, 32),
        (3, "size", "uint", True, None),
        (4, "envelope", "bin", True, 65536),
        (5, "ttl", "uint", False, None),
    ]),
    "CONTENT_ACK": (15, [
        (1, "ref_id", "fixed", True, 16),
        (2, "hash", "fixed", True, 32),
    ]),
    "ERROR": (16, [
        (1, "code", "code", True, None),
        (2, "message", "str", True, 1024),
        (3, "blob_id", "fixed", False, 16),
    ]),
    "DEVICES": (17, []),
    "DEVICES_RESPONSE": (18, [(1, "devices", "devices", True, 1000)]),
    "OK": (19, []),
    "BLOB_DELETED": (20, [
        (1, "blob_id", "fixed", True, 16),
        (2, "cursor", "uint", True, None),
    ]),
    "INVITE_PUT": (21, [
        (1, "code_id", "fixed", True, 5),
        (2, "sealed", "bin", True, 2048),
    ]),
    "INVITE_TAKE": (22, [(1, "code_id", "fixed", True, 5)]),
    "INVITE": (23, [(1, "sealed", "bin", True, 2048)]),
}

TYPE_NAMES = {num: name for name, (num, _) in SPEC.items()}

# ---------------------------------------------------------------------------
# The canonical values (docs/PROTOCOL.md, "Test vectors"): present fields only.


def ramp(first, n):
    return bytes((first + i) & 0xFF for i in range(n))


BLOB_ID = ramp(0x00, 16)
REF_ID = ramp(0x10, 16)
GROUP_ID = ramp(0x20, 32)
GROUP_PK = ramp(0x40, 32)
PROOF = ramp(0x60, 64)
RELAY_ID = ramp(0xA0, 32)
NODE_ID = ramp(0xC0, 32)
HASH = ramp(0xE0, 32)
ENVELOPE = b"envelope"
T_CLIENT = 1700000000000
T_STORED = 1700000000250
T_SEEN = 1700000000400
T_SERVER = 1700000000500

EXPECTED = {
    "hello": ("HELLO", {
        "version": 1, "group_id": GROUP_ID, "group_pk": GROUP_PK, "proof": PROOF,
        "device_name": "laptop", "last_cursor": 41, "auth": b"credential",
        "client_time": T_CLIENT, "members": [{"device_id": NODE_ID}]}),
    "welcome": ("WELCOME", {
        "relay_id": RELAY_ID, "max_cursor": 42, "pending": 3, "server_time": T_SERVER,
        "max_blob": MAX_BLOB, "pull_limit": 1000}),
    "push": ("PUSH", {"blob_id": BLOB_ID, "envelope": ENVELOPE, "ttl": 86400}),
    "push_minimal": ("PUSH", {"blob_id": BLOB_ID, "envelope": ENVELOPE}),
    "push_ack": ("PUSH_ACK", {
        "blob_id": BLOB_ID, "cursor": 42, "server_time": T_SERVER, "duplicate": True}),
    "pull": ("PULL", {"after": 41, "limit": 100, "peek": True}),
    "pull_response": ("PULL_RESPONSE", {
        "blobs": [
            {"blob_id": BLOB_ID, "cursor": 42, "sender": NODE_ID, "time": T_STORED,
             "envelope": ENVELOPE},
            {"blob_id": REF_ID, "cursor": 43, "sender": NODE_ID, "time": T_STORED,
             "envelope": ENVELOPE, "kind": 1, "hash": HASH, "size": 5000000},
        ],
        "has_more": True, "max_cursor": 50}),
    "notify": ("NOTIFY", {
        "blob_id": BLOB_ID, "cursor": 42, "sender": NODE_ID, "size": 8, "time": T_STORED,
        "kind": 2}),
    "presence": ("PRESENCE", {"status": "active"}),
    "delete": ("DELETE", {"blob_id": BLOB_ID, "force": True}),
    "revoke_device": ("REVOKE_DEVICE", {"device_id": NODE_ID}),
    "device_revoked": ("DEVICE_REVOKED", {"device_id": NODE_ID}),
    "register_push": ("REGISTER_PUSH", {"platform": "apns", "token": "tok-0123"}),
    "unregister_push": ("UNREGISTER_PUSH", {"token": "tok-0123"}),
    "content_ref": ("CONTENT_REF", {
        "ref_id": REF_ID, "hash": HASH, "size": 5000000, "envelope": ENVELOPE, "ttl": 86400}),
    "content_ack": ("CONTENT_ACK", {"ref_id": REF_ID, "hash": HASH}),
    "error": ("ERROR", {"code": 1004, "message": "not the blob's owner", "blob_id": BLOB_ID}),
    "error_minimal": ("ERROR", {"code": 1000, "message": "invalid message"}),
    "devices": ("DEVICES", {}),
    "devices_response": ("DEVICES_RESPONSE", {
        "devices": [
            {"device_id": NODE_ID, "name": "laptop", "last_seen": T_SEEN, "online": True,
             "pending": 0},
            {"device_id": b"\x77" * 32, "name": "phone", "last_seen": T_CLIENT,
             "online": False, "pending": 5, "revoked": True},
        ]}),
    "ok": ("OK", {}),
    "blob_deleted": ("BLOB_DELETED", {"blob_id": BLOB_ID, "cursor": 42}),
    "invite_put": ("INVITE_PUT", {"code_id": ramp(0xa0, 5), "sealed": ENVELOPE}),
    "invite_take": ("INVITE_TAKE", {"code_id": ramp(0xa0, 5)}),
    "invite": ("INVITE", {"sealed": ENVELOPE}),
}

# ---------------------------------------------------------------------------


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + what)
        return ok

    def equal(self, got, want, what):
        return self.check(got == want, "%s: got %r, want %r" % (what, got, want))


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def value_ok(kind, limit, v):
    """True when `v`, as Python's msgpack decoded it, fits the field's kind and limit."""
    if kind == "uint":
        return is_uint(v) and v < 2**64
    if kind == "code":
        return is_uint(v) and v < 2**32
    if kind == "kind":
        return is_uint(v) and v <= 2
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "fixed":
        return isinstance(v, bytes) and len(v) == limit
    if kind == "bin":
        return isinstance(v, bytes) and len(v) <= limit
    if kind == "str":
        return isinstance(v, str) and len(v.encode()) <= limit
    if kind in ITEMS:
        return isinstance(v, list) and len(v) <= limit
    raise ValueError(kind)


def is_default(kind, v):
    """True for the value an optional field has when absent (a fixed field has none)."""
    return kind != "fixed" and v in (0, False, b"", "")


def check_map(c, fields, m, where, top=True):
    """Checks a decoded map against its field table; returns it keyed by field name."""
    named = {}
    if not c.check(isinstance(m, dict), "%s is not a map" % where):
        return named
    c.equal(list(m), sorted(m), "%s keys ascending" % where)
    by_key = {f[0]: f for f in fields}
    for k, v in m.items():
        if k == 0 and top:
            continue
        if not c.check(k in by_key, "%s has key %r outside the specification" % (where, k)):
            continue
        _, name, kind, required, limit = by_key[k]
        c.check(value_ok(kind, limit, v), "%s.%s has a bad value %r" % (where, name, v))
        if not required:
            c.check(not is_default(kind, v),
                    "%s.%s is optional and at its default but was sent" % (where, name))
        if kind in ITEMS:
            v = [check_map(c, ITEMS[kind], item, "%s.%s[%d]" % (where, name, i), False)
                 for i, item in enumerate(v)]
        named[name] = v
    for k, name, kind, required, limit in fields:
        if required:
            c.check(k in m, "%s is missing required %s" % (where, name))
    return named


def with_defaults(fields, named):
    """The fields as the tool prints them: every field, defaults filled in, bytes in hex."""
    out = {}
    for k, name, kind, required, limit in fields:
        v = named.get(name)
        if kind in ITEMS:
            v = [with_defaults(ITEMS[kind], item) for item in v or []]
        elif v is None:
            v = {"uint": 0, "code": 0, "kind": 0, "bool": False, "fixed": None,
                 "bin": "", "str": ""}[kind]
        if isinstance(v, bytes):
            v = v.hex()
        out[name] = v
    return out


def pack_named(type_name, named):
    """The canonical body of a message given by field name, packed by Python."""
    num, fields = SPEC[type_name]
    m = {0: num}
    for k, name, kind, required, limit in fields:
        if name not in named:
            continue
        v = named[name]
        if kind in ITEMS:
            v = [{ik: item[iname] for ik, iname, *_ in ITEMS[kind] if iname in item}
                 for item in v]
        m[k] = v
    return msgpack.packb(m, use_bin_type=True)


def unpack(body):
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def run_tool(build_dir, args=(), stdin=None):
    tool = os.path.join(build_dir, "tool_proto_vectors")
    out = subprocess.run([tool, *args], input=stdin, capture_output=True, text=True,
                         check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


# ---------------------------------------------------------------------------
# 1. The encoder's vectors


def check_vectors(c, vectors):
    seen_types = set()
    c.equal(sorted(v["vector"] for v in vectors), sorted(EXPECTED), "the set of vectors")
    for v in vectors:
        name = v["vector"]
        where = name
        if not c.check(name in EXPECTED, "unexpected vector %s" % name):
            continue
        type_name, want = EXPECTED[name]
        num, fields = SPEC[type_name]
        c.equal(v["name"], type_name, "%s: type name" % where)
        c.equal(v["type"], num, "%s: type number" % where)
        seen_types.add(v["type"])
        body = bytes.fromhex(v["hex"])
        frame = bytes.fromhex(v["frame_hex"])
        c.equal(frame[:4], len(body).to_bytes(4, "big"), "%s: frame header" % where)
        c.equal(frame[4:], body, "%s: frame body" % where)
        m = unpack(body)
        if not c.check(isinstance(m, dict), "%s: body is not a map" % where):
            continue
        c.equal(next(iter(m)), 0, "%s: key 0 first" % where)
        c.equal(m.get(0), num, "%s: key 0 holds the type" % where)
        named = check_map(c, fields, m, where)
        c.equal(named, want, "%s: field values" % where)
        c.equal(v["fields"], with_defaults(fields, want), "%s: fields printed by the tool" % where)
        # Python's encoder writes integers and headers in their shortest form too.
        c.equal(msgpack.packb(m, use_bin_type=True).hex(), v["hex"],
                "%s: shortest encoding" % where)
        c.equal(pack_named(type_name, want).hex(), v["hex"], "%s: built from the spec" % where)
    c.equal(sorted(seen_types), list(range(1, 24)), "every message type has a vector")


# ---------------------------------------------------------------------------
# 2. docs/PROTOCOL.md

VECTOR_RE = re.compile(r"^Vector `([a-z_]+)`, (body|frame):\n```\n(.*?)```", re.M | re.S)
HEADING_RE = re.compile(r"^#+ (.+?)\s*$", re.M)
ROW_RE = re.compile(r"^\|(.+)\|\s*$")
DOC_KINDS = {"uint": ("uint", "code", "kind"), "bool": ("bool",), "bin": ("fixed", "bin"),
             "str": ("str",), "array": tuple(ITEMS)}


def doc_tables(text):
    """{heading: [(key, name, type, required), ...]} for each field table.

    A field table is the first table in a section whose header row starts
    with "key | field | type | required".
    """
    tables = {}
    sections = HEADING_RE.split(text)
    for heading, body in zip(sections[1::2], sections[2::2]):
        rows = None
        for line in body.splitlines():
            m = ROW_RE.match(line.strip())
            cells = [x.strip() for x in m.group(1).split("|")] if m else None
            if rows is None:
                if cells and cells[:4] == ["key", "field", "type", "required"]:
                    rows = []
                continue
            if cells is None:
                break
            if cells[0].isdigit():
                rows.append((int(cells[0]), cells[1].strip("`"), cells[2], cells[3]))
        if rows:
            tables[heading] = rows
    return tables


def check_docs(c, vectors, path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    by_name = {v["vector"]: v for v in vectors}
    found = {}
    for name, what, block in VECTOR_RE.findall(text):
        data = bytes.fromhex("".join(block.split()))
        c.check((name, what) not in found, "docs: vector %s %s twice" % (name, what))
        found[(name, what)] = data
        if not c.check(name in by_name, "docs: vector %s is not produced by the encoder" % name):
            continue
        want = by_name[name]["hex" if what == "body" else "frame_hex"]
        c.equal(data.hex(), want, "docs: vector %s %s" % (name, what))
    for name in by_name:
        c.check((name, "body") in found, "docs: vector %s body is missing" % name)
    c.check(any(w == "frame" for _, w in found), "docs: no frame vector")

    tables = doc_tables(text)
    for type_name, (num, fields) in SPEC.items():
        heading = "%s (%d)" % (type_name, num)
        if not fields:
            c.check(heading in tables or re.search(r"^###+ %s\s*$" % re.escape(heading), text,
                                                   re.M) is not None,
                    "docs: no section for %s" % heading)
            continue
        check_doc_table(c, tables, heading, fields)
    for heading, fields in ITEM_TABLES.items():
        check_doc_table(c, tables, heading, fields)


def check_doc_table(c, tables, heading, fields):
    if not c.check(heading in tables, "docs: no field table under '%s'" % heading):
        return
    rows = tables[heading]
    c.equal([r[0] for r in rows], [f[0] for f in fields], "docs: keys of %s" % heading)
    for (key, name, typ, req), (fkey, fname, kind, required, limit) in zip(rows, fields):
        c.equal(name, fname, "docs: %s key %d name" % (heading, key))
        c.check(kind in DOC_KINDS.get(typ, ()),
                "docs: %s.%s has type %r, want one for %s" % (heading, name, typ, kind))
        c.equal(req, "required" if required else "optional",
                "docs: %s.%s required" % (heading, name))


# ---------------------------------------------------------------------------
# 3. Messages built here, decoded by zks


def hexline(b):
    return b.hex() + "\n"


def decode_all(build_dir, bodies):
    return run_tool(build_dir, ["--decode"], "".join(hexline(b) for b in bodies))


def check_python_built(c, build_dir, vectors):
    cases = []  # (what, body, expected rc, expected type name or None, expected named fields)

    # Every canonical message, packed by Python.
    for name, (type_name, want) in EXPECTED.items():
        cases.append(("python-built " + name, pack_named(type_name, want), "ZKS_OK", type_name,
                      want))

    # An unknown optional field (with nested containers) in a message and in an item.
    push = {0: 3, 1: BLOB_ID, 2: ENVELOPE, 3: 86400,
            50: {"future": [1, -2, 3.5, None, {"x": b"\x00"}]}, 9999: "later"}
    cases.append(("unknown optional fields", msgpack.packb(push), "ZKS_OK", "PUSH",
                  EXPECTED["push"][1]))
    pull_resp = {0: 6, 1: [{1: BLOB_ID, 2: 42, 3: NODE_ID, 4: T_STORED, 5: ENVELOPE,
                            77: [True, False]}], 2: False, 3: 42}
    cases.append(("unknown field in an item", msgpack.packb(pull_resp), "ZKS_OK",
                  "PULL_RESPONSE",
                  {"blobs": [{"blob_id": BLOB_ID, "cursor": 42, "sender": NODE_ID,
                              "time": T_STORED, "envelope": ENVELOPE}],
                   "has_more": False, "max_cursor": 42}))

    # Integers wider than needed: map16 header, uint16 type, uint32 key, uint64
    # and positive int8 values (Python's encoder cannot write these; built by hand).
    wide = (b"\xde\x00\x03" + b"\xcd\x00\x00" + b"\xcd\x00\x05"
            + b"\xce\x00\x00\x00\x01" + b"\xcf" + (41).to_bytes(8, "big")
            + b"\x02" + b"\xd0\x64")
    cases.append(("non-minimal integers", wide, "ZKS_OK", "PULL", {"after": 41, "limit": 100}))
    wide_bin = (b"\x83\x00\x14\x01\xc6\x00\x00\x00\x10" + BLOB_ID + b"\x02\xd3"
                + (42).to_bytes(8, "big"))
    cases.append(("bin32 header and int64 cursor", wide_bin, "ZKS_OK", "BLOB_DELETED",
                  {"blob_id": BLOB_ID, "cursor": 42}))

    # Keys in any order, type last.
    cases.append(("keys out of order", msgpack.packb({2: 100, 1: 41, 0: 5}), "ZKS_OK", "PULL",
                  {"after": 41, "limit": 100}))
    # An optional field sent at its default.
    cases.append(("optional field at its default", msgpack.packb({0: 5, 1: 41, 2: 0}), "ZKS_OK",
                  "PULL", {"after": 41}))

    # 1000 items is the limit; 1001 is too many.
    item = {1: BLOB_ID, 2: 1, 3: NODE_ID, 4: 0, 5: b""}
    cases.append(("1000 blobs", msgpack.packb({0: 6, 1: [item] * 1000, 2: True, 3: 9}),
                  "ZKS_OK", "PULL_RESPONSE", None))
    cases.append(("1001 blobs", msgpack.packb({0: 6, 1: [item] * 1001, 2: True, 3: 9}),
                  "ZKS_ETOOBIG", None, None))

    # Refused messages.
    refused = [
        ("unknown type", {0: 99, 1: 1}, "ZKS_EUNSUPPORTED"),
        ("type zero", {0: 0}, "ZKS_EUNSUPPORTED"),
        ("no type", {1: 41}, "ZKS_EMALFORMED"),
        ("missing required field", {0: 3, 1: BLOB_ID}, "ZKS_EMALFORMED"),
        ("missing item field", {0: 6, 1: [{1: BLOB_ID}], 2: False, 3: 0}, "ZKS_EMALFORMED"),
        ("string key", {0: 5, "after": 41}, "ZKS_EMALFORMED"),
        ("str for bin", {0: 9, 1: "0123456789abcdef"}, "ZKS_EMALFORMED"),
        ("blob_id of 17 bytes", {0: 9, 1: bytes(17)}, "ZKS_EMALFORMED"),
        ("blob_id of 15 bytes", {0: 9, 1: bytes(15)}, "ZKS_EMALFORMED"),
        ("negative cursor", {0: 5, 1: -1}, "ZKS_EMALFORMED"),
        ("float cursor", {0: 5, 1: 1.0}, "ZKS_EMALFORMED"),
        ("int for bool", {0: 9, 1: BLOB_ID, 2: 1}, "ZKS_EMALFORMED"),
        ("kind 3", {0: 7, 1: BLOB_ID, 2: 1, 3: NODE_ID, 4: 1, 5: 1, 6: 3}, "ZKS_EMALFORMED"),
        ("error code over 32 bits", {0: 16, 1: 2**32, 2: ""}, "ZKS_EMALFORMED"),
        ("device name of 257 bytes",
         {0: 1, 1: 1, 2: GROUP_ID, 3: GROUP_PK, 4: PROOF, 5: "n" * 257}, "ZKS_ETOOBIG"),
        ("auth of 4097 bytes",
         {0: 1, 1: 1, 2: GROUP_ID, 3: GROUP_PK, 4: PROOF, 5: "", 7: bytes(4097)},
         "ZKS_ETOOBIG"),
        ("too many fields", dict([(0, 19)] + [(k, None) for k in range(100, 164)]),
         "ZKS_ETOOBIG"),
        ("an array body", [5, 41], "ZKS_EMALFORMED"),
    ]
    for what, obj, rc in refused:
        cases.append((what, msgpack.packb(obj), rc, None, None))
    cases.append(("trailing byte", msgpack.packb({0: 19}) + b"\xc0", "ZKS_EMALFORMED", None,
                  None))
    cases.append(("invalid UTF-8", b"\x82\x00\x08\x01\xa2\xc3\x28", "ZKS_EMALFORMED", None,
                  None))
    cases.append(("duplicate key", b"\x83\x00\x05\x01\x29\x01\x2a", "ZKS_EMALFORMED", None,
                  None))
    deep = b"\x82\x00\x13\x63" + b"\x91" * 17 + b"\xc0"
    cases.append(("deep unknown field", deep, "ZKS_ETOOBIG", None, None))
    cases.append(("truncated", pack_named("HELLO", EXPECTED["hello"][1])[:-1], "ZKS_ETRUNCATED",
                  None, None))

    results = decode_all(build_dir, [body for _, body, *_ in cases])
    if not c.equal(len(results), len(cases), "decoded answers"):
        return
    canonical_hex = {v["vector"]: v["hex"] for v in vectors}
    for (what, body, rc, type_name, want), got in zip(cases, results):
        if not c.equal(got["rc"], rc, what + ": result"):
            continue
        if rc != "ZKS_OK":
            continue
        num, fields = SPEC[type_name]
        c.equal(got["name"], type_name, what + ": type")
        c.equal(got["reencode_rc"], "ZKS_OK", what + ": encodes again")
        if want is not None:
            c.equal(got["fields"], with_defaults(fields, want), what + ": fields")
            # Decoding then encoding gives the canonical body.
            c.equal(got["reencoded_hex"], pack_named(type_name, want).hex(),
                    what + ": canonical form")
        if what.startswith("python-built "):
            c.equal(got["reencoded_hex"], canonical_hex[what[len("python-built "):]],
                    what + ": same bytes as zks")


# ---------------------------------------------------------------------------


def emit_vectors(vectors):
    """The blocks for docs/PROTOCOL.md, 16 bytes a line."""
    def block(label, data):
        lines = [" ".join("%02x" % b for b in data[i:i + 16]) for i in range(0, len(data), 16)]
        return "%s:\n```\n%s\n```\n" % (label, "\n".join(lines))

    for v in vectors:
        print("#### %s: %s, %d bytes" % (v["vector"], v["name"], len(v["hex"]) // 2))
        print()
        print(block("Vector `%s`, body" % v["vector"], bytes.fromhex(v["hex"])))
        if v["vector"] == "push":
            print(block("Vector `%s`, frame" % v["vector"], bytes.fromhex(v["frame_hex"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--docs", default=os.path.join("docs", "PROTOCOL.md"))
    ap.add_argument("--emit-vectors", action="store_true")
    args = ap.parse_args()

    vectors = run_tool(args.build_dir)
    if args.emit_vectors:
        emit_vectors(vectors)
        return 0
    c = Checker()
    check_vectors(c, vectors)
    check_docs(c, vectors, args.docs)
    check_python_built(c, args.build_dir, vectors)
    print("%d passed, %d failed" % (c.passed, c.failed))
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
