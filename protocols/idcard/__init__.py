"""Second-generation ID-card readers' SAM protocol (GA/T 467), pure: bytes in, typed data out.

Modules, one job each:

- `frames`: the frame envelope, its checksum and the incremental bounded `FrameDecoder`;
- `messages`: `Command`s (encode), `Response`s (decode), the SW3 `Status` codes, SAM ids;
- `text`: the 256-byte UCS-2 text block of all four card types; `cards`: its typed records;
- `read`: a whole card read (`ReadResult`: text, raw WLT photo and its hash, fingerprint);
- `idnumber`: GB 11643 check digits and masking; `nations`: the GB/T 3304 table;
- `errors`: `LocalProtocolError` (our fault) vs `RemoteProtocolError` (the peer's).

Typical host-side use::

    port.write(encode_command(FIND_CARD))
    decoder.feed(port.read(n))
    frame = decoder.next_frame()            # or NEED_DATA: read more
    response = decode_response(frame)
"""

from protocols.idcard.cards import (
    CardText,
    CardType,
    ForeignPermit2017,
    ForeignPermit2023,
    HkMoTwPermit,
    ResidentCard,
    Sex,
    describe,
)
from protocols.idcard.errors import (
    CardDataError,
    FrameChecksumError,
    FrameLengthError,
    IdCardProtocolError,
    InvalidValue,
    LocalProtocolError,
    RemoteProtocolError,
)
from protocols.idcard.frames import (
    BUFFER_LIMIT,
    MAX_FRAME_SIZE,
    NEED_DATA,
    PREAMBLE,
    Frame,
    FrameDecoder,
    NeedData,
    checksum,
    encode_frame,
)
from protocols.idcard.idnumber import check_digit, id_number_problem, is_valid_id_number, masked_id
from protocols.idcard.messages import (
    BAUD_RATES,
    FIND_CARD,
    READ_ADDITIONAL_ADDRESS,
    READ_TEXT_PHOTO,
    READ_WITH_FINGERPRINT,
    RESET_SAM,
    SAM_ID,
    SAM_STATUS,
    SELECT_CARD,
    Command,
    Response,
    Status,
    decode_command,
    decode_response,
    decode_sam_id,
    encode_command,
    encode_response,
    encode_sam_id,
    set_baud,
    set_max_rf_frame,
)
from protocols.idcard.nations import NATIONS, nation_name
from protocols.idcard.read import (
    FINGERPRINT_SIZE,
    PHOTO_SIZE,
    ReadResult,
    encode_read_data,
    parse_read,
)
from protocols.idcard.text import TEXT_BLOCK_SIZE, card_type_of, encode_text_block, parse_text_block

__all__ = [
    "BAUD_RATES",
    "BUFFER_LIMIT",
    "FIND_CARD",
    "FINGERPRINT_SIZE",
    "MAX_FRAME_SIZE",
    "NATIONS",
    "NEED_DATA",
    "PHOTO_SIZE",
    "PREAMBLE",
    "READ_ADDITIONAL_ADDRESS",
    "READ_TEXT_PHOTO",
    "READ_WITH_FINGERPRINT",
    "RESET_SAM",
    "SAM_ID",
    "SAM_STATUS",
    "SELECT_CARD",
    "TEXT_BLOCK_SIZE",
    "CardDataError",
    "CardText",
    "CardType",
    "Command",
    "ForeignPermit2017",
    "ForeignPermit2023",
    "Frame",
    "FrameChecksumError",
    "FrameDecoder",
    "FrameLengthError",
    "HkMoTwPermit",
    "IdCardProtocolError",
    "InvalidValue",
    "LocalProtocolError",
    "NeedData",
    "ReadResult",
    "RemoteProtocolError",
    "ResidentCard",
    "Response",
    "Sex",
    "Status",
    "card_type_of",
    "check_digit",
    "checksum",
    "decode_command",
    "decode_response",
    "decode_sam_id",
    "describe",
    "encode_command",
    "encode_frame",
    "encode_read_data",
    "encode_response",
    "encode_sam_id",
    "encode_text_block",
    "id_number_problem",
    "is_valid_id_number",
    "masked_id",
    "nation_name",
    "parse_read",
    "parse_text_block",
    "set_baud",
    "set_max_rf_frame",
]
