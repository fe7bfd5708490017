"""Persistent identifiers: ARKs with a NOID check character (NCDA), minted and validated."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from itertools import count, repeat

from protocol.errors import IdentifierError

__all__ = [
    "ALPHABET",
    "BLADE_LENGTH",
    "Ark",
    "check_char",
    "is_valid",
    "mint",
    "parse",
    "validate_code",
    "validate_naan",
    "validate_prefix",
]

# The NOID "betanumeric" alphabet: digits and consonants except 'l' (too like '1'); 29 symbols, a
# prime, which is what lets the check character catch every single-character error and every
# transposition of two adjacent characters.
ALPHABET = "0123456789bcdfghjkmnpqrstvwxz"
_ORDINAL = {c: i for i, c in enumerate(ALPHABET)}

# The random part of a minted name. 29**9 ≈ 1.45e13 names per library; the store refuses a
# collision and mints again, so a name is never reused.
BLADE_LENGTH = 9
ENTROPY_BYTES = 8

_NAAN = re.compile(r"[0-9]{5,9}")
_CODE = re.compile(rf"[{ALPHABET}]{{2,16}}")
_NAME = re.compile(rf"[{ALPHABET}]+")
MAX_PID_LENGTH = 64
# Check-character weights are positions mod 29, so NCDA catches every single substitution and
# every adjacent transposition (including one with the check character) only while "NAAN/name",
# check character included, is shorter than the alphabet: at most 28 characters.
MAX_CHECKED_LENGTH = len(ALPHABET) - 1


def check_char(text: str) -> str:
    """NCDA check character over `text` ("NAAN/name"): characters outside the alphabet count 0."""
    ordinals = map(_ORDINAL.get, text, repeat(0))
    total = sum(map(operator.mul, count(1), ordinals))
    return ALPHABET[total % len(ALPHABET)]


def validate_naan(naan: str) -> str:
    if not _NAAN.fullmatch(naan):
        raise IdentifierError(f"network ARK prefix {naan!r} must be 5 to 9 digits")
    return naan


def validate_code(code: str) -> str:
    if not _CODE.fullmatch(code):
        raise IdentifierError(
            f"library code {code!r} must be 2 to 16 characters of {ALPHABET!r} "
            "(digits and lower-case consonants without 'l')"
        )
    return code


@dataclass(frozen=True)
class Ark:
    """A checked ARK. `name` = library code + blade + check character."""

    naan: str
    name: str

    def __str__(self) -> str:
        return f"ark:{self.naan}/{self.name}"

    @property
    def library_code(self) -> str:
        # The blade has a fixed length, so names are prefix-free across library codes.
        return self.name[: -(BLADE_LENGTH + 1)]


def validate_prefix(naan: str, code: str) -> None:
    """A NAAN and library code that can mint checkable ids together."""
    validate_naan(naan)
    validate_code(code)
    if len(naan) + 1 + len(code) + BLADE_LENGTH + 1 > MAX_CHECKED_LENGTH:
        raise IdentifierError(
            f"NAAN {naan!r} and library code {code!r} together are too long: "
            f"'NAAN/name' must fit in {MAX_CHECKED_LENGTH} characters for its check character"
        )


def mint(naan: str, code: str, entropy: bytes) -> Ark:
    """A new opaque identifier under `naan` for library `code`, from caller-supplied randomness."""
    validate_prefix(naan, code)
    if len(entropy) < ENTROPY_BYTES:
        raise ValueError(f"mint needs {ENTROPY_BYTES} bytes of entropy")
    # 2**64 / 29**9 ≈ 1.3e6, so the modulo bias is below one part in a million.
    n = int.from_bytes(entropy[:ENTROPY_BYTES], "big")
    blade = []
    for _ in range(BLADE_LENGTH):
        n, r = divmod(n, len(ALPHABET))
        blade.append(ALPHABET[r])
    stem = code + "".join(blade)
    return Ark(naan, stem + check_char(f"{naan}/{stem}"))


def parse(text: str) -> Ark:
    """Parse and check a pid. Accepts `ark:NAAN/name` and `ark:/NAAN/name`; hyphens are
    identity-inert in ARKs and are dropped; upper case is folded. A wrong check character is
    reported as a mistyped identifier."""
    if len(text) > MAX_PID_LENGTH:
        raise IdentifierError("identifier too long")
    s = text.strip()
    if s[:4].lower() != "ark:":
        raise IdentifierError(f"{text!r} is not an ARK (it must start with 'ark:')")
    s = s[4:].lstrip("/")
    naan, sep, name = s.partition("/")
    name = name.replace("-", "").lower()
    if not sep or not _NAAN.fullmatch(naan):
        raise IdentifierError(f"{text!r}: the part after 'ark:' must be NAAN/name")
    if not _NAME.fullmatch(name) or len(name) < BLADE_LENGTH + 3:
        raise IdentifierError(f"{text!r}: name has characters outside {ALPHABET!r} or is short")
    if len(naan) + 1 + len(name) > MAX_CHECKED_LENGTH:
        raise IdentifierError(f"{text!r} is too long for its check character")
    if check_char(f"{naan}/{name[:-1]}") != name[-1]:
        raise IdentifierError(f"{text!r} fails its check character: probably mistyped")
    return Ark(naan, name)


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except IdentifierError:
        return False
    return True
