"""``civic-verify BUNDLE.zip``: check an evidence bundle offline (format civic-evidence/v1,
written by the server's ``infra/audit/evidence.py``; docs/audit.md describes it).

What is checked, with the key you trust (``--key``; else the bundle's own, with a warning):

1. the checkpoint: the spine's signature and Merkle root over the chain heads, and the
   C2SP note (origin, tree size, root) signed by the same key;
2. every event: its canonical bytes hash to its digest, the digest links to its hash from
   the previous event of its node (seq 1, 2, 3 … without gaps), it names its node and root;
3. the root's tree: the events' leaves and the skipped runs' subtree hashes, in leaf order,
   rebuild exactly the signed tree root at the signed size;
4. each node ends where the manifest says, and the chain heads the checkpoint lists match;
5. ``consistency.json`` (if present): the signed tree extends the earlier signed checkpoint.

Exit status 0 when everything holds; 1 naming the first bad event (node, seq) or the first
failed check; 2 when the bundle cannot be read at all. Memory: per node of the subtree, a
few values; events are streamed from the zip.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from civic_verify.hashing import Hash, by_name, link
from civic_verify.note import NoteError, parse_vkey, verify_note
from civic_verify.tlog import Frontier, leaf_hash, verify_consistency

FORMAT = "civic-evidence/v1"
#: str in: json.loads of bytes sniffs the encoding of every line
_decode = json.JSONDecoder().decode
_EVENT_KEY = b',"event":'
MAX_REPORTED = 100


class BundleError(Exception):
    """The bundle cannot be read (not a zip, a member missing, not JSON)."""


@dataclass(frozen=True)
class Failure:
    reason: str
    detail: str
    node: str | None = None
    seq: int | None = None

    def text(self) -> str:
        where = f"node {self.node} seq {self.seq}: " if self.node is not None else ""
        return f"{where}{self.reason}: {self.detail}"


@dataclass
class Report:
    events: int = 0
    nodes: int = 0
    tree_size: int = 0
    origin: str = ""
    #: failures that name an event of a chain (altered, missing, inserted, broken_link)
    chain: list[Failure] = field(default_factory=list)
    #: every other failure (signatures, tree, order, manifest)
    other: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.chain and not self.other

    @property
    def first(self) -> Failure | None:
        """The first bad event in file order; else the first failed check."""
        if self.chain:
            return self.chain[0]
        return self.other[0] if self.other else None


@dataclass
class _Chain:
    code: str
    expected: int = 1
    prev: bytes = bytes(32)
    failed: bool = False


def _canonical_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _spine_root(heads: Sequence[dict[str, Any]], h: Hash) -> bytes:
    """The spine's Merkle root (server: infra/audit/merkle.py; odd nodes promoted)."""
    level = [
        h(
            b"\x00"
            + _canonical_json(
                {"code": x["code"], "hash": x["hash"], "node_id": x["node_id"], "seq": x["seq"]}
            )
        )
        for x in heads
    ]
    if not level:
        return h(b"")
    while len(level) > 1:
        up = [h(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def _trusted_key(arg: str | None) -> tuple[bytes | None, str | None]:
    """(raw Ed25519 key, note key name or None) from --key: a verifier key or base64."""
    if arg is None:
        return None, None
    if "+" in arg and not arg.endswith("="):
        name, alg, key = parse_vkey(arg)
        if alg != 0x01:
            raise BundleError("the verifier key is not an Ed25519 key")
        return key, name
    try:
        raw = base64.b64decode(arg.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise BundleError("--key: a base64 Ed25519 public key or a note verifier key") from None
    if len(raw) != 32:
        raise BundleError("--key: an Ed25519 public key is 32 bytes")
    return raw, None


def _json_member(zf: zipfile.ZipFile, name: str, required: bool = True) -> Any:
    try:
        data = zf.read(name)
    except KeyError:
        if required:
            raise BundleError(f"the bundle has no {name}") from None
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise BundleError(f"{name} is not JSON") from None


def verify_bundle(path: str, trusted_key: str | None = None) -> Report:
    """Check a bundle; raises BundleError when it cannot be read at all."""
    key, key_name = _trusted_key(trusted_key)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"not a readable zip: {exc}") from None
    with zf:
        return _verify(zf, key, key_name)


def _verify(zf: zipfile.ZipFile, key: bytes | None, key_name: str | None) -> Report:
    report = Report()
    manifest = _json_member(zf, "manifest.json")
    checkpoint = _json_member(zf, "checkpoint.json")
    public = _json_member(zf, "public-key.json")
    try:
        if manifest.get("format") != FORMAT:
            raise BundleError(f"not a {FORMAT} bundle")
        chain_h = by_name(str(manifest["chain_hash_algorithm"]))
        tree_h = by_name(str(manifest["tree_hash_algorithm"]))
        bundle_key = base64.b64decode(public["public_key"], validate=True)
        name = key_name or str(public["note_key_name"])
        report.origin = str(manifest["origin"])
        report.tree_size = int(manifest["tree_size"])
        nodes = {str(n["node_id"]): n for n in manifest["nodes"]}
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise BundleError(f"malformed manifest or public key: {exc!r}") from None
    report.nodes = len(nodes)
    if key is None:
        key = bundle_key
        report.warnings.append(
            "no --key given: trusting the key inside the bundle (it only shows the bundle is "
            "consistent with itself); pass the key you fetched and kept"
        )
    elif not hmac.compare_digest(key, bundle_key):
        report.other.append(Failure("key", "the bundle is signed by another key than --key"))

    signed_root = _check_checkpoint(report, checkpoint, manifest, key, name, chain_h)
    heads = {str(x["node_id"]): x for x in checkpoint.get("heads", []) if isinstance(x, dict)}
    root_id = report.origin.rsplit("/", 1)[-1]
    chains = {nid: _Chain(str(n["code"])) for nid, n in nodes.items()}
    frontier = Frontier(tree_h)
    tree_ok = True

    def fail_chain(f: Failure, state: _Chain) -> None:
        state.failed = True
        if len(report.chain) < MAX_REPORTED:
            report.chain.append(f)

    for number, raw in _lines(zf, "events.ndjson"):
        parsed = _parse_line(raw)
        if isinstance(parsed, str):
            report.other.append(Failure("malformed", f"line {number}: {parsed}"))
            tree_ok = False
            break
        meta, canonical = parsed
        if canonical is None:  # a skipped run
            if tree_ok:
                tree_ok = _push_skip(report, frontier, meta, number)
            continue
        report.events += 1
        node_id, seq = str(meta.get("node_id")), meta.get("seq")
        state = chains.get(node_id)
        code = state.code if state else str(meta.get("node"))
        if state is None:
            report.chain.append(
                Failure("inserted", "an event of a node outside the bundle's subtree", code, seq)
            )
        elif not state.failed:
            _check_event(meta, canonical, state, chain_h, root_id, fail_chain)
            head = heads.get(node_id)
            if head is not None and head.get("seq") == seq and head.get("hash") != meta["hash"]:
                fail_chain(
                    Failure("altered", "not the hash the checkpoint's head lists", code, seq), state
                )
        if tree_ok:
            leaf = meta.get("leaf")
            if leaf != frontier.size:
                report.other.append(
                    Failure(
                        "out_of_order", f"leaf {leaf} where leaf {frontier.size} belongs", code, seq
                    )
                )
                tree_ok = False
            else:
                try:
                    frontier.push(0, frontier.size, leaf_hash(tree_h, bytes.fromhex(meta["hash"])))
                except (ValueError, TypeError):
                    tree_ok = False

    for nid, state in chains.items():
        if state.failed:
            continue
        want = nodes[nid]
        last = state.expected - 1
        if last < int(want.get("seq", 0)):
            fail_chain(
                Failure(
                    "missing",
                    f"the bundle ends at seq {last}, its manifest at {want.get('seq')}",
                    state.code,
                    last + 1,
                ),
                state,
            )
        elif last > int(want.get("seq", 0)):
            fail_chain(
                Failure(
                    "inserted",
                    f"beyond the manifest's last seq {want.get('seq')}",
                    state.code,
                    last,
                ),
                state,
            )
        elif last and want.get("hash") != state.prev.hex():
            fail_chain(
                Failure("broken_link", "the manifest's last hash differs", state.code, last), state
            )
    if tree_ok:
        if frontier.size != report.tree_size:
            report.other.append(
                Failure(
                    "tree",
                    f"the bundle holds {frontier.size} leaves, the checkpoint {report.tree_size}",
                )
            )
        elif signed_root is not None and frontier.root() != signed_root:
            report.other.append(
                Failure(
                    "tree",
                    "the events do not rebuild the signed tree root (something was "
                    "rewritten and rehashed)",
                )
            )
    _check_consistency(report, zf, key, name, tree_h, signed_root)
    return report


def _check_checkpoint(
    report: Report, cp: Any, manifest: Any, key: bytes, name: str, chain_h: Hash
) -> bytes | None:
    """The signed tree root, after checking the spine and the note; None if unusable."""
    try:
        message = _canonical_json({"at": cp["at"], "node": cp["node"], "root": cp["root"]})
        Ed25519PublicKey.from_public_bytes(key).verify(
            base64.b64decode(cp["signature"], validate=True), message
        )
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
        report.other.append(Failure("signature", "the checkpoint's spine is not signed by the key"))
    try:
        if _spine_root(cp["heads"], chain_h).hex() != cp["root"]:
            report.other.append(Failure("spine", "the heads do not rebuild the spine's root"))
    except (KeyError, TypeError, ValueError):
        report.other.append(Failure("spine", "malformed heads"))
    try:
        body = verify_note(str(cp["note"]), name, key)
    except (NoteError, KeyError) as exc:
        report.other.append(Failure("signature", f"the checkpoint note: {exc}"))
        return None
    if body.origin != report.origin or body.size != report.tree_size:
        report.other.append(Failure("note", "the note names another log or size than the manifest"))
    if cp.get("tree_root") != body.root.hex():
        report.other.append(Failure("note", "the checkpoint's tree root is not the note's"))
    return body.root


def _lines(zf: zipfile.ZipFile, name: str) -> Iterator[tuple[int, bytes]]:
    try:
        member = zf.open(name)
    except KeyError:
        raise BundleError(f"the bundle has no {name}") from None
    with member:
        for number, raw in enumerate(member, start=1):
            yield number, raw.rstrip(b"\n")


def _parse_line(raw: bytes) -> tuple[dict[str, Any], bytes | None] | str:
    """(metadata, canonical bytes) of an event line; (skip record, None) of a skip line."""
    cut = raw.find(_EVENT_KEY)
    try:
        if cut < 0:
            skip = _decode(raw.decode())
            if not isinstance(skip, dict) or "skip" not in skip:
                return "neither an event nor a skip line"
            return skip, None
        if not raw.endswith(b"}"):
            return "an event line ends with its event"
        meta = _decode((raw[:cut] + b"}").decode())
        canonical = raw[cut + len(_EVENT_KEY) : -1]
        if not isinstance(meta, dict):
            return "not an object"
        return meta, canonical
    except ValueError:
        return "not JSON"


def _push_skip(report: Report, frontier: Frontier, skip: dict[str, Any], number: int) -> bool:
    try:
        start, end = (int(x) for x in skip["skip"])
        if start != frontier.size:
            report.other.append(
                Failure(
                    "out_of_order",
                    f"line {number}: skipped leaves start at {start}, leaf {frontier.size} belongs",
                )
            )
            return False
        at = start
        for level, value in skip["subtrees"]:
            frontier.push(int(level), at, bytes.fromhex(value))
            at += 1 << int(level)
        if at != end:
            raise ValueError("the subtrees do not cover the skipped leaves")
    except (KeyError, TypeError, ValueError) as exc:
        report.other.append(Failure("malformed", f"line {number}: a skip line: {exc}"))
        return False
    return True


def _check_event(
    meta: dict[str, Any], canonical: bytes, state: _Chain, h: Hash, root_id: str, fail: Any
) -> None:
    code = state.code
    try:
        seq, position = int(meta["seq"]), int(meta["position"])
        prev, stored = bytes.fromhex(meta["prev_hash"]), bytes.fromhex(meta["hash"])
    except (KeyError, TypeError, ValueError):
        fail(
            Failure(
                "malformed", "the event line lacks seq, position or hashes", code, meta.get("seq")
            ),
            state,
        )
        return
    if seq > state.expected:
        fail(
            Failure(
                "missing", f"seq {state.expected} is absent; next is {seq}", code, state.expected
            ),
            state,
        )
        return
    if seq < state.expected:
        fail(
            Failure(
                "inserted", f"seq {seq} appears again after seq {state.expected - 1}", code, seq
            ),
            state,
        )
        return
    if prev != state.prev:
        fail(
            Failure("broken_link", "prev_hash is not the hash of the event before it", code, seq),
            state,
        )
        return
    if link(h, prev, seq, position, h(canonical)) != stored:
        fail(Failure("altered", "the content no longer matches its hash", code, seq), state)
        return
    try:
        content = _decode(canonical.decode())
    except ValueError:
        content = None
    if (
        not isinstance(content, dict)
        or content.get("node_id") != meta.get("node_id")
        or (content.get("root_id") != root_id)
    ):
        fail(Failure("altered", "the event names another node or root", code, seq), state)
        return
    state.expected += 1
    state.prev = stored


def _check_consistency(
    report: Report, zf: zipfile.ZipFile, key: bytes, name: str, h: Hash, new_root: bytes | None
) -> None:
    proof = _json_member(zf, "consistency.json", required=False)
    if proof is None or new_root is None:
        return
    try:
        old = verify_note(str(proof["from"]["note"]), name, key)
        path = [bytes.fromhex(x) for x in proof["proof"]]
        ok = old.origin == report.origin and verify_consistency(
            h, old.size, report.tree_size, old.root, new_root, path
        )
    except (NoteError, KeyError, TypeError, ValueError) as exc:
        report.other.append(Failure("consistency", f"unreadable: {exc}"))
        return
    if not ok:
        report.other.append(
            Failure("consistency", f"the tree does not extend the earlier checkpoint of {old.size}")
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="civic-verify", description="Check a civic-ledger evidence bundle offline."
    )
    parser.add_argument("bundle", help="the evidence zip (GET /v1/audit/evidence)")
    parser.add_argument(
        "--key",
        help="the signing key you trust: base64 Ed25519 public key "
        "(public_key of /v1/audit/public-key) or its note verifier key (vkey)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = verify_bundle(args.bundle, args.key)
    except (BundleError, NoteError) as exc:
        print(f"civic-verify: {exc}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    first = report.first
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "events": report.events,
                    "nodes": report.nodes,
                    "tree_size": report.tree_size,
                    "origin": report.origin,
                    "first_failure": None if first is None else first.__dict__,
                    "failures": [f.__dict__ for f in [*report.chain, *report.other]],
                },
                ensure_ascii=False,
            )
        )
    elif first is None:
        print(
            f"OK: {report.events} events of {report.nodes} nodes verified; tree "
            f"{report.origin} at size {report.tree_size} is signed"
        )
    else:
        print(f"FAILED: {first.text()}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
