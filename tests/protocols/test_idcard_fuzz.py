"""Property tests of the SAM frame codec: round trips, recovery, and a 10 000-example fuzz."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.idcard import (
    BUFFER_LIMIT,
    MAX_FRAME_SIZE,
    NEED_DATA,
    PREAMBLE,
    Command,
    Frame,
    FrameDecoder,
    IdCardProtocolError,
    RemoteProtocolError,
    Response,
    decode_command,
    decode_response,
    encode_command,
    encode_frame,
    encode_response,
)
from protocols.idcard.frames import MAX_PAYLOAD

payloads = st.binary(min_size=2, max_size=MAX_PAYLOAD)
small_payloads = st.binary(min_size=2, max_size=64)
no_preamble_byte = st.binary(max_size=40).map(lambda b: b.replace(b"\xaa", b"\x55"))


def decode_all(decoder: FrameDecoder, wire: bytes, chunk: int) -> list[Frame]:
    out: list[Frame] = []
    for start in range(0, len(wire), chunk):
        decoder.feed(wire[start : start + chunk])
        while (frame := decoder.next_frame()) is not NEED_DATA:
            out.append(frame)
    return out


@given(cmd=st.integers(0, 255), para=st.integers(0, 255), data=st.binary(max_size=300))
def test_command_round_trip(cmd: int, para: int, data: bytes) -> None:
    command = Command(cmd=cmd, para=para, data=data)
    decoder = FrameDecoder()
    decoder.feed(encode_command(command))
    frame = decoder.next_frame()
    assert frame is not NEED_DATA
    assert decode_command(frame) == command


@given(
    sw=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    data=st.binary(max_size=MAX_PAYLOAD - 3),
    chunk=st.integers(1, 600),
)
def test_response_round_trip_in_any_chunking(
    sw: tuple[int, int, int], data: bytes, chunk: int
) -> None:
    response = Response(sw1=sw[0], sw2=sw[1], sw3=sw[2], data=data)
    frames = decode_all(FrameDecoder(), encode_response(response), chunk)
    assert [decode_response(f) for f in frames] == [response]


@given(
    pieces=st.lists(
        st.one_of(
            st.tuples(st.just("good"), small_payloads | payloads),
            st.tuples(st.just("garbage"), no_preamble_byte),
            st.tuples(st.just("corrupt"), small_payloads.map(lambda b: b.replace(b"\xaa", b""))),
        ),
        max_size=8,
    ),
    chunk=st.integers(1, MAX_FRAME_SIZE),
)
def test_every_good_frame_survives_garbage_and_corrupt_frames(
    pieces: list[tuple[str, bytes]], chunk: int
) -> None:
    wire, good = b"", []
    for kind, data in pieces:
        if kind == "good":
            wire += encode_frame(data)
            good.append(data)
        elif kind == "garbage":
            wire += data
        elif len(data) >= 2:  # a complete frame whose checksum is off by one bit
            frame = bytearray(encode_frame(data))
            frame[-1] ^= 0x01
            wire += frame
    decoder = FrameDecoder()
    got: list[bytes] = []
    for start in range(0, len(wire), chunk):
        decoder.feed(wire[start : start + chunk])
        for _ in range(100):
            try:
                frame = decoder.next_frame()
            except RemoteProtocolError:
                continue
            if frame is NEED_DATA:
                break
            got.append(frame.payload)
    assert got == good


# Real-sized frames built once: generating kilobytes per example would make 10 000 slow.
_BIG = [encode_frame(bytes(n)) for n in (1287, 2313, MAX_PAYLOAD)]  # 30 01, 30 10, largest


def stream_from_script(script: bytes) -> list[bytes]:
    """Chunks of a hostile byte stream, built from one drawn byte string.

    Each step reads an opcode and its arguments from `script`: raw bytes, a good frame, a big
    frame (whole or cut), a preamble with any length field, a bare or partial preamble, or a
    frame with a wrong checksum. One draw per example keeps 10 000 examples quick, and
    hypothesis still shrinks the script to a minimal failing stream.
    """
    chunks, i = [], 0
    while i < len(script):
        op, arg = script[i] % 8, script[i + 1 : i + 3].ljust(2, b"\x00")
        i += 1
        size = arg[0] % 40
        body = script[i : i + size]
        match op:
            case 0:
                chunks.append(body)
                i += size
            case 1 | 7 if len(body) >= 2:
                frame = bytearray(encode_frame(body))
                frame[-1] ^= 0x01 if op == 7 else 0
                chunks.append(bytes(frame))
                i += size
            case 2 | 3:
                big = _BIG[arg[0] % len(_BIG)]
                chunks.append(big if op == 2 else big[: 1 + arg[1] * len(big) // 256])
                i += 2
            case 4:
                chunks.append(PREAMBLE + arg)
                i += 2
            case 5:
                chunks.append(PREAMBLE)
            case _:
                chunks.append(PREAMBLE[: 1 + arg[0] % 4])
                i += 1
    return chunks


@settings(max_examples=10_000, deadline=None)
@given(script=st.binary(max_size=96))
def test_fuzz_decoder_raises_only_its_own_errors_and_stays_bounded(script: bytes) -> None:
    decoder = FrameDecoder()
    for data in stream_from_script(script):
        for start in range(0, len(data), MAX_FRAME_SIZE):
            decoder.feed(data[start : start + MAX_FRAME_SIZE])
            assert decoder.buffered <= BUFFER_LIMIT
            for _ in range(decoder.buffered + 2):  # each step consumes >= 5 bytes
                try:
                    frame = decoder.next_frame()
                except IdCardProtocolError as exc:
                    assert isinstance(exc, RemoteProtocolError)
                    continue
                finally:
                    assert decoder.buffered <= BUFFER_LIMIT
                if frame is NEED_DATA:
                    break
                assert 2 <= len(frame.payload) <= MAX_PAYLOAD
            else:
                raise AssertionError("the decoder kept producing without input")
            # Drained: what is left is less than one frame.
            assert decoder.buffered < MAX_FRAME_SIZE
