"""C2SP signed notes, checkpoints and cosignatures (c2sp.org/signed-note, tlog-checkpoint,
tlog-cosignature), Ed25519 only.

A checkpoint note::

    civic-ledger/330106000000            origin
    48113                                tree size
    n8bT...=                             base64 root hash
    <optional extension lines>
                                         blank line
    — civic-ledger <base64(key id(4) || Ed25519 signature(64))>

The signature covers the body (every line up to and including the root hash line and any
extension lines, each ending in a newline). The key id is the first 4 bytes of
SHA-256(name || 0x0A || 0x01 || public key). A witness cosignature (tlog-cosignature v1)
signs ``"cosignature/v1\\ntime <unix seconds>\\n" + body`` with key id byte 0x04, and its
line carries key id || big-endian 8-byte time || signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """Not a well-formed note or checkpoint."""


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes  # for cosignatures: time (8 bytes) || signature


@dataclass(frozen=True)
class CheckpointBody:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def vkey(name: str, public_key: bytes, alg: int = ED25519) -> str:
    """The verifier key string note tooling reads: name+hex key id+base64(alg || key)."""
    return (
        f"{name}+{key_id(name, alg, public_key).hex()}+"
        f"{base64.b64encode(bytes([alg]) + public_key).decode()}"
    )


def parse_vkey(text: str) -> tuple[str, int, bytes]:
    """(name, algorithm byte, raw public key) of a verifier key; NoteError if malformed."""
    try:
        # the base64 part may itself hold "+": only the first two separate fields
        name, kid_hex, data_b64 = text.strip().split("+", 2)
        data = base64.b64decode(data_b64, validate=True)
        kid = bytes.fromhex(kid_hex)
    except (ValueError, binascii.Error):
        raise NoteError("not a verifier key (name+keyid+base64)") from None
    if not name or len(data) != 33 or kid != key_id(name, data[0], data[1:]):
        raise NoteError("the verifier key's id does not match its name and key")
    return name, data[0], data[1:]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError("a key name is non-empty, without spaces or '+'")


def sign_line(name: str, key_and_sig: bytes) -> str:
    return f"{DASH} {name} {base64.b64encode(key_and_sig).decode()}\n"


def sign_note(body: str, name: str, public_key: bytes, sign: Callable[[bytes], bytes]) -> str:
    """``body`` followed by the blank line and one Ed25519 signature line."""
    _check_name(name)
    if not body.endswith("\n"):
        raise NoteError("a note body ends with a newline")
    sig = sign(body.encode())
    return body + "\n" + sign_line(name, key_id(name, ED25519, public_key) + sig)


def split_note(text: str) -> tuple[str, list[Signature]]:
    """(body, signatures) of a signed note."""
    if len(text.encode()) > MAX_NOTE_BYTES:
        raise NoteError("the note is too large")
    if not text.endswith("\n"):
        raise NoteError("a note ends with a newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise NoteError("a note has a blank line before its signatures")
    body, sig_text = text[: cut + 1], text[cut + 2 :]
    signatures: list[Signature] = []
    for line in sig_text.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError("a signature line is '— <name> <base64>'")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error):
            raise NoteError("a signature is base64") from None
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        signatures.append(Signature(parts[1], raw[:4], raw[4:]))
    if not signatures or len(signatures) > MAX_SIGNATURES:
        raise NoteError("a note carries 1 to 100 signatures")
    return body, signatures


def parse_checkpoint(body: str) -> CheckpointBody:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint is origin, size and root hash lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
        raise NoteError("a checkpoint's size is a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error):
        raise NoteError("a checkpoint's root hash is base64") from None
    return CheckpointBody(origin, int(size_text), root, tuple(lines[3:-1]))


def _ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_note(text: str, name: str, public_key: bytes) -> CheckpointBody:
    """The checkpoint of a note carrying a valid Ed25519 signature by (name, public_key).

    Raises NoteError when the note is malformed or has no such valid signature."""
    body, signatures = split_note(text)
    kid = key_id(name, ED25519, public_key)
    for sig in signatures:
        if (
            sig.name == name
            and sig.key_id == kid
            and _ed25519_ok(public_key, sig.signature, body.encode())
        ):
            return parse_checkpoint(body)
    raise NoteError(f"no valid signature by {name}")


def cosignature_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def cosign(
    body: str, name: str, public_key: bytes, timestamp: int, sign: Callable[[bytes], bytes]
) -> str:
    """A witness's cosignature line over a checkpoint body."""
    _check_name(name)
    sig = sign(cosignature_message(body, timestamp))
    return sign_line(
        name, key_id(name, COSIGNATURE_V1, public_key) + timestamp.to_bytes(8, "big") + sig
    )


def parse_signature_line(line: str) -> Signature:
    _, signatures = split_note("x\n\n" + line.rstrip("\n") + "\n")
    if len(signatures) != 1:
        raise NoteError("one signature line")
    return signatures[0]


def verify_cosignature(body: str, line: str, name: str, public_key: bytes) -> int:
    """The time a valid cosignature by (name, public_key) over ``body`` carries."""
    sig = parse_signature_line(line)
    if sig.name != name or sig.key_id != key_id(name, COSIGNATURE_V1, public_key):
        raise NoteError(f"not a cosignature by {name}")
    if len(sig.signature) != 8 + 64:
        raise NoteError("a cosignature is time (8 bytes) and an Ed25519 signature")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if not _ed25519_ok(public_key, sig.signature[8:], cosignature_message(body, timestamp)):
        raise NoteError(f"the cosignature by {name} does not verify")
    return timestamp
