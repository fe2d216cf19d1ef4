"""Citizen ID numbers (GB 11643): the ISO 7064 MOD 11-2 check digit, structure, masking.

The same 18-character structure (area or nationality code, birth date, sequence, check digit)
is used by resident ID cards, Hong Kong/Macao/Taiwan residence permits (area 81/82/83) and the
2023 foreign permanent resident card (leading 9).
"""

from __future__ import annotations

from datetime import date

__all__ = ["check_digit", "id_number_problem", "is_valid_id_number", "masked_id"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_ASCII_DIGITS = frozenset("0123456789")


def check_digit(first17: str) -> str:
    """The check character ('0'-'9' or 'X') for the first 17 digits of an ID number."""
    if len(first17) != 17 or not set(first17) <= _ASCII_DIGITS:
        raise ValueError(
            f"check_digit needs exactly 17 ASCII digits, got {len(first17)} characters"
        )
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def id_number_problem(number: str) -> str | None:
    """What is wrong with an 18-character ID number, or None if it is well formed.

    Checks length, digits, the embedded birth date and the check digit. The description never
    repeats the number (it is personal data), so it is safe to put in an exception or a log.
    """
    if len(number) != 18:
        return f"an ID number has 18 characters, this one has {len(number)}"
    body, last = number[:17], number[17]
    if not set(body) <= _ASCII_DIGITS:
        return "the first 17 characters of an ID number must be digits"
    if last not in _ASCII_DIGITS and last != "X":
        return "the last character of an ID number must be a digit or 'X'"
    try:
        date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return "characters 7-14 of an ID number must be a real birth date (YYYYMMDD)"
    if check_digit(body) != last:
        return "the check digit does not match (GB 11643, ISO 7064 MOD 11-2)"
    return None


def is_valid_id_number(number: str) -> bool:
    """True if `number` is a well-formed 18-character ID number with a correct check digit."""
    return id_number_problem(number) is None


def masked_id(number: str) -> str:
    """The number with all but its first 4 and last 4 characters replaced by '*'.

    Numbers of 8 characters or fewer are masked entirely: keeping 4 + 4 would show them whole.
    """
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
