"""Per-person encryption of personal data (infra/pii_crypto.py) and the codec's field cipher."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from domain.hierarchy import NodeKind
from domain.member import Member
from domain.personal_data import PersonalData
from domain.refs import NodeRef
from domain.registry import AGGREGATES, event_classes
from infra.event_codec import EventCodec, PlaintextRefused, personal_fields
from infra.pii_crypto import (
    ALG,
    DataKey,
    DecryptionFailed,
    b64u,
    is_sealed,
    new_data_key,
    open_sealed,
    open_with_wrapped,
    seal,
    unb64u,
    unwrap_key,
    wrap_key,
)
from infra.pii_keys import PiiKeyError, master_key, parse_master_key, random_master_key
from infra.settings import Settings

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PERSON = PersonalData(name="欧阳娜娜", phone="13812341234", id_number="11010519491231002X")
PLAINTEXTS = ("欧阳娜娜", "13812341234", "11010519491231002X")
MASTER = bytes(range(32))


class DictCipher:
    """A field cipher over in-memory data keys (the keyring without a database)."""

    def __init__(self) -> None:
        self.keys: dict[UUID, DataKey] = {}

    def encrypt(self, stream_id: UUID, field_name: str, plaintext: bytes) -> Any:
        key = self.keys.setdefault(stream_id, new_data_key())
        return seal(key, stream_id, field_name, plaintext)

    def decrypt(self, stream_id: UUID, field_name: str, sealed: Any) -> bytes | None:
        key = self.keys.get(stream_id)
        if key is None:
            return None
        try:
            return open_sealed(key, stream_id, field_name, sealed)
        except DecryptionFailed:
            return None


def _node(kind: str, code: str, parent: UUID | None = None, root: UUID | None = None) -> NodeRef:
    return NodeRef(
        id=uuid4(), code=code, kind=NodeKind(kind), root_id=root or ROOT, parent_id=parent
    )


ROOT = uuid4()


def _registered() -> Any:
    member = Member.register(
        member_id=uuid4(),
        person=PERSON,
        community=_node("community", "330106001001"),
        home_unit=_node("unit", "U-1"),
        at=T0,
    )
    [event] = member.collect_events()
    return event


def _decode(codec: EventCodec, event: Any, data: bytes, cipher: Any) -> Any:
    return codec.decode(
        stream_type="member",
        stream_id=event.originator_id,
        version=1,
        type_name="MemberRegistered",
        schema_version=1,
        data=data,
        occurred_at=event.timestamp,
        cipher=cipher,
    )


def test_seal_and_open_round_trip_with_bound_associated_data() -> None:
    key, stream = new_data_key(), uuid4()
    sealed = seal(key, stream, "person", b'{"name":"x"}')
    assert set(sealed) == {"alg", "kid", "nonce", "ct"} and sealed["alg"] == ALG
    assert sealed["kid"] == key.key_id and len(unb64u(sealed["nonce"])) == 12
    assert is_sealed(sealed) and not is_sealed({"name": "x"})
    assert open_sealed(key, stream, "person", sealed) == b'{"name":"x"}'
    # a fresh nonce every time
    assert seal(key, stream, "person", b"a")["nonce"] != seal(key, stream, "person", b"a")["nonce"]
    # another stream, another field, another key: nothing opens
    with pytest.raises(DecryptionFailed):
        open_sealed(key, uuid4(), "person", sealed)
    with pytest.raises(DecryptionFailed):
        open_sealed(key, stream, "other", sealed)
    with pytest.raises(DecryptionFailed):
        open_sealed(DataKey(key.key_id, new_data_key().key), stream, "person", sealed)


@pytest.mark.parametrize("part", ["ct", "nonce", "kid", "alg"])
def test_tampered_sealed_values_fail_cleanly(part: str) -> None:
    key, stream = new_data_key(), uuid4()
    sealed = seal(key, stream, "person", b"secret")
    raw = bytearray(unb64u(sealed[part])) if part in ("ct", "nonce") else None
    if raw is not None:
        raw[0] ^= 1
        sealed[part] = b64u(bytes(raw))
    else:
        sealed[part] = "x"
    with pytest.raises(DecryptionFailed):
        open_sealed(key, stream, "person", sealed)
    with pytest.raises(DecryptionFailed):
        open_sealed(key, stream, "person", {**sealed, "nonce": "***"})


def test_wrapped_keys_are_bound_to_their_row() -> None:
    root, member, key = uuid4(), uuid4(), new_data_key()
    wrapped = wrap_key(MASTER, root, member, key)
    assert key.key not in wrapped
    assert unwrap_key(MASTER, root, member, key.key_id, wrapped) == key
    for args in (
        (MASTER, root, uuid4(), key.key_id, wrapped),
        (MASTER, uuid4(), member, key.key_id, wrapped),
        (MASTER, root, member, "other", wrapped),
        (bytes(32), root, member, key.key_id, wrapped),
        (MASTER, root, member, key.key_id, wrapped[:-1]),
    ):
        with pytest.raises(DecryptionFailed):
            unwrap_key(*args)
    sealed = seal(key, member, "person", b"x")

    def opened(key_id: str | None, wrapped_key: bytes | None) -> bytes | None:
        return open_with_wrapped(
            MASTER,
            root_id=root,
            member_id=member,
            key_id=key_id,
            wrapped_key=wrapped_key,
            field_name="person",
            sealed=sealed,
        )

    assert opened(key.key_id, wrapped) == b"x"
    assert opened(None, None) is None  # no key row: shredded
    assert "key=" not in repr(key) and key.key.hex() not in repr(key)


def test_personal_fields_are_found_by_type() -> None:
    found = {t: personal_fields(c) for t, c in event_classes().items() if personal_fields(c)}
    assert found == {"MemberRegistered.v1": ("person",), "HouseholdVisited.v1": ("note",)}


def test_codec_seals_personal_data_before_encoding_and_opens_it_on_decode() -> None:
    codec = EventCodec(event_classes(), AGGREGATES, require_cipher=True)
    cipher = DictCipher()
    event = _registered()
    new = codec.encode(event, cipher=cipher)
    text = new.data.decode()
    for value in PLAINTEXTS:
        assert value not in text
    stored = msgspec.json.decode(new.data)
    assert is_sealed(stored["person"]) and stored["community_code"] == "330106001001"
    assert codec.has_personal_data("MemberRegistered")
    assert not codec.has_personal_data("ServiceRecorded")
    decoded = _decode(codec, event, new.data, cipher)
    assert decoded.person == PERSON
    # no key (crypto-shredded), no cipher, or a tampered value: the person decodes as None
    assert _decode(codec, event, new.data, DictCipher()).person is None
    assert _decode(codec, event, new.data, None).person is None
    ct = bytearray(unb64u(stored["person"]["ct"]))
    ct[-1] ^= 1
    stored["person"]["ct"] = b64u(bytes(ct))
    assert _decode(codec, event, msgspec.json.encode(stored), cipher).person is None
    # old events stored in clear still decode
    clear = msgspec.json.encode({**stored, "person": msgspec.structs.asdict(PERSON_STRUCT)})
    assert _decode(codec, event, clear, cipher).person == PERSON


class _PersonStruct(msgspec.Struct):
    name: str
    phone: str
    id_number: str | None


PERSON_STRUCT = _PersonStruct(PERSON.name, PERSON.phone, PERSON.id_number)


def test_the_application_codec_refuses_clear_personal_data() -> None:
    event = _registered()
    with pytest.raises(PlaintextRefused) as raised:
        EventCodec(event_classes(), AGGREGATES, require_cipher=True).encode(event)
    for value in PLAINTEXTS:
        assert value not in str(raised.value)
    # an erased-style event (person None) needs no cipher
    assert EventCodec(event_classes(), AGGREGATES).encode(event).data


def test_master_key_configuration(tmp_path: Path) -> None:
    configured = random_master_key()
    assert len(parse_master_key(configured)) == 32
    urlsafe = base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode().rstrip("=")
    assert parse_master_key(urlsafe) == bytes([0xFB] * 32)
    for bad in ("", "not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(PiiKeyError) as raised:
            parse_master_key(bad)
        assert bad not in str(raised.value) or not bad
    with pytest.raises(PiiKeyError):
        master_key(Settings(env="production", data_dir=tmp_path))
    key = master_key(Settings(env="production", pii_master_key=configured, data_dir=tmp_path))
    assert key == base64.b64decode(configured)
    dev = master_key(Settings(data_dir=tmp_path))
    assert len(dev) == 32 and (tmp_path / "secrets" / "pii-master-key").exists()
    assert master_key(Settings(data_dir=tmp_path / ".." / tmp_path.name)) == dev


def test_sm4_gb_t_32907_and_rfc_8998_vectors() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (enc.update(key) + enc.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"
    # RFC 8998 appendix A.1 (SM4-GCM)
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    gcm = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    gcm.authenticate_additional_data(aad)
    ct = gcm.update(pt) + gcm.finalize()
    assert ct.hex().upper().startswith("17F399F08C67D5EE19D0DC9969C4BB7D")
    assert gcm.tag.hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"


def test_sm4_gcm_sealing_opens_and_detects_tampering() -> None:
    import os
    from uuid import uuid4

    import pytest

    from infra.pii_crypto import (
        SM4_ALG,
        DataKey,
        DecryptionFailed,
        open_sealed,
        seal,
        unwrap_key,
        wrap_key,
    )

    key = DataKey(key_id="k1", key=os.urandom(32))
    stream = uuid4()
    sealed = seal(key, stream, "phone", b"13900000000", SM4_ALG)
    assert sealed["alg"] == "SM4GCM"
    assert open_sealed(key, stream, "phone", sealed) == b"13900000000"
    with pytest.raises(DecryptionFailed):
        open_sealed(key, stream, "name", sealed)  # another field's associated data
    flipped = dict(
        sealed, ct=sealed["ct"][:-2] + ("A" if sealed["ct"][-2] != "A" else "B") + sealed["ct"][-1]
    )
    with pytest.raises(DecryptionFailed):
        open_sealed(key, stream, "phone", flipped)
    master, root, member = os.urandom(32), uuid4(), uuid4()
    wrapped = wrap_key(master, root, member, key, SM4_ALG)
    assert wrapped[:1] == b"\x02"
    assert unwrap_key(master, root, member, "k1", wrapped).key == key.key
    with pytest.raises(DecryptionFailed):
        unwrap_key(master, root, uuid4(), "k1", wrapped)
