"""The fast frame path (gamesvc.fastframe) against Autobahn's own frame parser: same messages, same closes."""

from __future__ import annotations

import json
import struct
from typing import Any

import autobahn
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamesvc import fastframe
from gamesvc.protocol import GameProtocol
from tests.frames import Wire, frame, request

MAX = 1024  # --max-message-bytes for these tests (its lowest allowed value), so oversize frames stay small


def run(chunks: list[bytes], fast: bool) -> tuple[Any, ...]:
    """Feed the reads to a fresh connection; what the server wrote (frames), its state and how it closed."""
    wire = Wire(max_message_bytes=MAX)
    wire.protocol.fast_frames = fast
    for chunk in chunks:
        if wire.protocol.state == wire.protocol.STATE_CLOSED:
            break
        wire.send(chunk)
    return wire.take(), wire.protocol.state, wire.transport.disconnecting, wire.closed


def text(n: int) -> bytes:
    """A JSON request of exactly `n` bytes (n >= 30)."""
    head = b'{"op":"ping","id":1,"pad":"'
    return head + b"x" * (n - len(head) - 2) + b'"}'


MASKS = st.binary(min_size=4, max_size=4)
FRAMES = st.one_of(
    st.builds(lambda i, m: frame(json.dumps({"op": "ping", "id": i}).encode(), mask=m), st.integers(0, 10**6), MASKS),
    st.builds(lambda n, m: frame(text(n), mask=m), st.integers(30, MAX + 200), MASKS),
    st.builds(lambda b, m: frame(b, mask=m), st.binary(max_size=200), MASKS),  # invalid JSON, invalid UTF-8, empty
    st.builds(lambda s, m: frame(s.encode("utf-8", "surrogatepass"), mask=m), st.text(max_size=60), MASKS),
    st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b'{"op":"ping"}\xe2\x82']).map(frame),
    st.builds(lambda b: frame(b, opcode=2), st.binary(max_size=50)),  # binary
    st.builds(lambda b: frame(b, fin=False) + frame(b"}", opcode=0), st.just(b'{"op":"ping","id":7')),  # fragments
    st.builds(lambda b: frame(b, fin=False), st.binary(max_size=20)),  # a fragment left open
    st.builds(lambda b: frame(b, opcode=0), st.binary(max_size=20)),  # a continuation outside a message
    st.builds(lambda b: frame(b, opcode=9), st.binary(max_size=125)),  # ping
    st.builds(lambda b: frame(b, opcode=10), st.binary(max_size=20)),  # pong
    st.builds(lambda c: frame(struct.pack("!H", c) + b"bye", opcode=8), st.sampled_from([1000, 1001, 1002, 3000, 5])),
    st.builds(lambda b: frame(b, mask=None), st.just(b'{"op":"ping","id":2}')),  # unmasked
    st.builds(lambda r: frame(b'{"op":"ping"}', rsv=r), st.integers(1, 7)),  # RSV bits
    st.builds(lambda o: frame(b'{"op":"ping"}', opcode=o), st.sampled_from([3, 7, 11, 15])),  # reserved opcodes
    st.just(b"\x81\xfe\x00\x10\x00\x00\x00\x00" + b'{"op":"ping"}   '),  # length not in its shortest form
    st.just(b"\x81\xff" + struct.pack("!Q", 20) + b"\x00" * 24),  # 64-bit length of a small frame
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, min_size=1, max_size=12), st.lists(st.integers(0, 5000), max_size=6))
def test_fast_path_and_autobahn_deliver_the_same_and_close_the_same(frames: list[bytes], cuts: list[int]) -> None:
    """For any frame sequence, cut into reads anywhere, the server answers with the same frames (replies, pongs,
    close frames and their codes) and ends in the same state whether common frames take the fast path or not."""
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:]) if b > a]
    assert run(chunks, fast=True) == run(chunks, fast=False)


def test_unmask_is_the_xor_with_the_repeated_key() -> None:
    """The big-integer unmask equals byte-by-byte masking for every length around the key's period."""
    mask = b"\x9a\x01\xff\x37"
    for n in range(0, 70):
        data = bytes((7 * i + 3) % 256 for i in range(n))
        assert fastframe.unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_unmask_of_long_payloads_is_the_xor_with_the_repeated_key() -> None:
    """From NVX_UNMASK_BYTES on (Autobahn's compiled masker) the unmask still equals byte-by-byte masking."""
    mask = b"\x9a\x01\xff\x37"
    for n in (fastframe.NVX_UNMASK_BYTES - 1, fastframe.NVX_UNMASK_BYTES, fastframe.NVX_UNMASK_BYTES + 3, 65536):
        data = bytes((7 * i + 3) % 256 for i in range(n))
        assert fastframe.unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data)), n


def count_process_data(wire: Wire) -> list[int]:
    """Records each call of the connection's Autobahn frame parser (processData)."""
    calls: list[int] = []
    original = GameProtocol.processData

    def counted(self: GameProtocol) -> bool:
        calls.append(1)
        return original(self)

    wire.protocol.processData = counted.__get__(wire.protocol)  # type: ignore[method-assign]
    return calls


def test_a_large_frame_cut_by_the_reads_is_kept_and_served_by_the_fast_path() -> None:
    """A 60 KB request arriving in four reads (the payload cut three times) is answered once it is whole, without
    Autobahn's parser (whose incremental masker and UTF-8 validator cost ~15 times more per byte), and the frames
    after it in the last read are served too."""
    wire = Wire()
    calls = count_process_data(wire)
    whole = frame(text(60_000))
    reads = [whole[:9000], whole[9000:30000], whole[30000:-5], whole[-5:] + request("ping", 2)]
    for read in reads[:-1]:
        wire.send(read)
        assert wire.take() == [] and wire.protocol._held is not None
    wire.send(reads[-1])
    assert [r["re"] for r in wire.replies()] == [1, 2] and not calls and wire.protocol._held is None


def test_a_kept_frame_goes_to_autobahn_when_the_server_closes_meanwhile() -> None:
    """When the server starts its closing handshake while part of a frame is kept, the rest of the bytes are read
    by Autobahn in order, exactly as without the fast path."""
    outcomes = []
    for fast in (True, False):
        wire = Wire()
        wire.protocol.fast_frames = fast
        whole = frame(text(5000))
        wire.send(whole[:100])
        wire.protocol.sendClose(1000, "bye")
        wire.send(whole[100:] + frame(struct.pack("!H", 1000), opcode=8))
        outcomes.append((wire.take(), wire.protocol.state, wire.closed))
    assert outcomes[0] == outcomes[1]


def test_a_kept_frame_is_let_go_when_the_connection_closes() -> None:
    """The reads of a frame not yet whole are dropped with the connection, not held by a protocol object that a
    pending bcrypt check keeps alive."""
    wire = Wire()
    wire.send(frame(text(5000))[:1000])
    assert wire.protocol._held is not None
    wire.protocol.connectionLost(Failure(ConnectionDone()))
    assert wire.protocol._held is None


def test_common_frames_bypass_autobahns_parser() -> None:
    """Whole small text frames are answered without Autobahn's processData; a frame whose header is cut by the
    read goes to it."""
    wire = Wire()
    calls: list[int] = []
    original = GameProtocol.processData

    def counted(self: GameProtocol) -> bool:
        calls.append(1)
        return original(self)

    wire.protocol.processData = counted.__get__(wire.protocol)  # type: ignore[method-assign]
    wire.send(request("ping", 1), request("ping", 2))
    assert [r["re"] for r in wire.replies()] == [1, 2] and not calls
    whole = request("ping", 3)
    wire.send(whole[:5])
    wire.send(whole[5:])
    assert [r["re"] for r in wire.replies()] == [3] and calls


def test_autobahn_internals_the_fast_path_reads_are_still_there() -> None:
    """Pins the Autobahn receive state that gamesvc.fastframe reads (see its docstring): fails loudly when an
    upgrade renames or changes it. Tested with Autobahn 26.10.x."""
    wire = Wire()
    protocol = wire.protocol
    for name in ("data", "current_frame", "inside_message", "_perMessageCompress", "logOctets", "logFrames",
                 "trackedTimings", "autoPingTimeoutCall", "autoPingRestartOnAnyTraffic", "maxMessagePayloadSize"):
        assert hasattr(protocol, name), f"Autobahn {autobahn.__version__} has no {name}: review gamesvc/fastframe.py"
    assert callable(protocol._cancelAutoPingTimeoutCall)
    assert fastframe.ready(protocol)
    protocol.fast_frames = False
    first = frame(b'{"op":"ping","id":1', fin=False)
    wire.send(first[:3])
    assert protocol.data == first[:3] and not fastframe.ready(protocol)  # a partial header is buffered in `data`
    wire.send(first[3:])
    assert protocol.inside_message and not fastframe.ready(protocol)  # inside a fragmented message
    wire.send(frame(b"}", opcode=0))
    assert fastframe.ready(protocol) and [r["re"] for r in wire.replies()] == [1]


def test_text_frames_are_the_bytes_autobahn_prepares() -> None:
    """fastframe.text_frame frames a reply exactly as Autobahn's prepareMessage does, at every length encoding."""
    wire = Wire()
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = b"x" * n
        assert fastframe.text_frame(payload) == wire.factory.prepareMessage(payload).payloadHybi, n
