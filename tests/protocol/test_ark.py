"""ARK minting, parsing and the NOID check character."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ark
from protocol.errors import IdentifierError, ProtocolError

from .strategies import CODES_BY_ROOM, arks, entropy, naans, naans_and_codes

ALPHABET = ark.ALPHABET


def _text(a: ark.Ark) -> str:
    return f"{a.naan}/{a.name}"


# --- the check character ------------------------------------------------------------------------


def test_check_char_matches_the_noid_specification_examples() -> None:
    assert ark.check_char("13030/xf93gt2") == "q"
    assert ark.check_char("13030/tf5p30086") == "k"


def test_check_char_weights_each_character_by_its_position() -> None:
    # "b" has ordinal 10: at position 1 it adds 10, at position 2 it adds 20.
    assert ark.check_char("b") == ALPHABET[10]
    assert ark.check_char("0b") == ALPHABET[20]
    # Characters outside the alphabet ('/', 'l') count zero but still take up a position.
    assert ark.check_char("/b") == ALPHABET[20]
    assert ark.check_char("lb") == ALPHABET[20]


# --- minting and parsing ------------------------------------------------------------------------


@given(naans_and_codes(), entropy)
def test_minted_ids_parse_back(naan_code: tuple[str, str], noise: bytes) -> None:
    naan, code = naan_code
    minted = ark.mint(naan, code, noise)
    assert str(minted) == f"ark:{naan}/{minted.name}"
    assert len(minted.name) == len(code) + ark.BLADE_LENGTH + 1
    assert set(minted.name) <= set(ALPHABET)
    assert minted.name[-1] == ark.check_char(f"{naan}/{minted.name[:-1]}")
    assert minted.library_code == code
    assert len(_text(minted)) <= ark.MAX_CHECKED_LENGTH
    assert ark.parse(str(minted)) == minted
    assert ark.is_valid(str(minted))


@given(naans_and_codes(), entropy, st.binary(max_size=8))
def test_mint_is_a_function_of_the_first_entropy_bytes(
    naan_code: tuple[str, str], noise: bytes, extra: bytes
) -> None:
    naan, code = naan_code
    assert ark.mint(naan, code, noise) == ark.mint(naan, code, noise + extra)


def test_mint_spreads_entropy_over_the_whole_blade() -> None:
    low = ark.mint("13030", "bc", (0).to_bytes(8, "big"))
    high = ark.mint("13030", "bc", (len(ALPHABET) ** 8).to_bytes(8, "big"))
    assert low.name == "bc" + "0" * 9 + ark.check_char("13030/bc000000000")
    assert high.name[:-1] == "bc" + "0" * 8 + "1"


@given(arks(), st.data())
def test_accepted_spellings_of_the_same_id(minted: ark.Ark, data: st.DataObject) -> None:
    name = minted.name
    spellings = [
        f"ark:{minted.naan}/{name}",
        f"ark:/{minted.naan}/{name}",
        f"ARK:{minted.naan}/{name}",
        f"Ark:/{minted.naan}/{name.upper()}",
        f"  ark:{minted.naan}/{name}\n",
    ]
    # Hyphens are identity-inert anywhere in the name.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(name)), max_size=4)))
    hyphenated = "".join(
        name[a:b] + "-" for a, b in zip([0, *cuts], [*cuts, len(name)], strict=True)
    )
    spellings.append(f"ark:/{minted.naan}/{hyphenated}")
    for spelling in spellings:
        assert ark.parse(spelling) == minted, spelling


@given(arks())
def test_every_substitution_in_the_name_is_detected(minted: ark.Ark) -> None:
    name = minted.name
    for i, original in enumerate(name):
        for c in ALPHABET:
            if c == original:
                continue
            typo = f"ark:{minted.naan}/{name[:i]}{c}{name[i + 1 :]}"
            with pytest.raises(IdentifierError, match="mistyped"):
                ark.parse(typo)


@given(arks())
def test_every_substitution_in_the_naan_is_detected(minted: ark.Ark) -> None:
    naan = minted.naan
    for i, original in enumerate(naan):
        for d in "0123456789":
            if d != original:
                with pytest.raises(IdentifierError):
                    ark.parse(f"ark:{naan[:i]}{d}{naan[i + 1 :]}/{minted.name}")


@given(arks())
def test_every_adjacent_transposition_is_detected(minted: ark.Ark) -> None:
    text = _text(minted)
    for i in range(len(text) - 1):
        a, b = text[i], text[i + 1]
        # NCDA gives '/' the ordinal of '0', so "0/" <-> "/0" cannot change the check character
        # (a NOID limitation, see test_moving_the_slash_past_a_zero_goes_unnoticed).
        if a == b or {a, b} == {"0", "/"}:
            continue
        with pytest.raises(IdentifierError):
            ark.parse("ark:" + text[:i] + b + a + text[i + 2 :])


def test_moving_the_slash_past_a_zero_goes_unnoticed() -> None:
    # Known NOID limitation, kept here so that it is a decision rather than a surprise: the
    # result is a well-formed id under a *different* NAAN, which a node must refuse because it
    # is not its network's NAAN. Past any other digit, the move is caught.
    minted = ark.mint("130300", "bc", bytes(8))
    assert ark.parse(f"ark:13030/0{minted.name}") == ark.Ark("13030", "0" + minted.name)
    minted = ark.mint("130301", "bc", bytes(8))
    assert not ark.is_valid(f"ark:13030/1{minted.name}")


@pytest.mark.parametrize("noise", [bytes([i]) * 8 for i in range(0, 256, 15)])
def test_longest_ids_keep_their_guarantees(noise: bytes) -> None:
    # "NAAN/name" of exactly MAX_CHECKED_LENGTH characters: the last stem character has weight
    # 27 and the check character sits at position 28, the edge of what NCDA protects.
    minted = ark.mint("123456789", "bcdfghjk", noise)
    text = _text(minted)
    assert len(text) == ark.MAX_CHECKED_LENGTH
    for i in range(len(text)):
        for c in ALPHABET:
            if c != text[i] and i >= len(minted.naan) + 1:
                assert not ark.is_valid(f"ark:{text[:i]}{c}{text[i + 1 :]}")
    for i in range(len(text) - 1):
        if text[i] != text[i + 1]:
            assert not ark.is_valid(f"ark:{text[:i]}{text[i + 1]}{text[i]}{text[i + 2 :]}")


def test_mint_refuses_a_naan_and_code_too_long_to_check() -> None:
    ark.mint("123456789", "bcdfghjk", bytes(8))
    ark.mint("13030", "bcdfghjkmnpq", bytes(8))
    with pytest.raises(IdentifierError):
        ark.mint("123456789", "bcdfghjkm", bytes(8))
    with pytest.raises(IdentifierError):
        ark.mint("13030", "bcdfghjkmnpqr", bytes(8))


@given(naans, st.text(alphabet=ALPHABET, min_size=2, max_size=16), entropy)
def test_mint_refuses_exactly_the_prefixes_too_long_to_check(
    naan: str, code: str, noise: bytes
) -> None:
    length = len(naan) + 1 + len(code) + ark.BLADE_LENGTH + 1
    if length > ark.MAX_CHECKED_LENGTH:
        with pytest.raises(IdentifierError, match="too long"):
            ark.mint(naan, code, noise)
    else:
        assert len(_text(ark.mint(naan, code, noise))) == length


def test_parse_refuses_ids_too_long_to_check() -> None:
    # Well-formed, with a correct check character, but at a length where position 29 has
    # weight 0 and substitutions there would go unnoticed.
    stem = "13030/" + "b" * (ark.MAX_CHECKED_LENGTH - len("13030/"))
    assert len(stem) + 1 > ark.MAX_CHECKED_LENGTH
    with pytest.raises(IdentifierError, match="too long"):
        ark.parse(f"ark:{stem}{ark.check_char(stem)}")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "13030/bc0000000003",  # no prefix
        "urn:13030/bc0000000003",
        "ark",
        "ark:",
        "ark:/",
        "ark:13030",  # no name
        "ark:13030/",  # empty name
        "ark:13030/---",  # nothing but hyphens
        "ark:1303/bc0000000003",  # NAAN too short
        "ark:1234567890/bc0000000003",  # NAAN too long
        "ark:1303x/bc0000000003",
        "ark:/13-030/bc0000000003",  # hyphens are only inert in the name
        "ark:13030/bc000000000",  # too short to hold code + blade + check
        "ark:13030/bc0000000003/page1",  # qualifiers are not part of a pid
        "ark:13030/bc00000000a3",  # 'a' is a vowel
        "ark:13030/bc00000000l3",  # 'l' is left out of the alphabet
        "ark:13030/bc0000000é03",
        "ark:13030/bc0000000_03",
        "ark:13030/bc0000000 03",
        "ark:13030/" + "b" * 60,  # overlong
        "ark:13030/bc0000000004",  # wrong check character
    ],
)
def test_malformed_ids_are_rejected(text: str) -> None:
    assert ark.parse(f"ark:13030/bc{'0' * 9}3") == ark.Ark("13030", "bc0000000003")
    with pytest.raises(IdentifierError) as info:
        ark.parse(text)
    assert isinstance(info.value, ProtocolError)
    assert info.value.code == "bad-identifier"
    assert not ark.is_valid(text)


def test_overlong_input_is_rejected_before_any_other_work() -> None:
    text = "ark:13030/bc0000000003" + " " * (ark.MAX_PID_LENGTH - 21)
    assert len(text) == ark.MAX_PID_LENGTH + 1
    with pytest.raises(IdentifierError, match="too long"):
        ark.parse(text)
    assert ark.is_valid(text[:-1])


# --- NAANs and library codes ---------------------------------------------------------------------


@pytest.mark.parametrize("naan", ["13030", "99999", "123456789", "00000"])
def test_good_naans(naan: str) -> None:
    assert ark.validate_naan(naan) == naan


@pytest.mark.parametrize(
    "naan", ["", "1234", "1234567890", "abcde", "12 345", "12345\n", "-12345", "١٢٣٤٥", "1234５"]
)
def test_bad_naans(naan: str) -> None:
    with pytest.raises(IdentifierError):
        ark.validate_naan(naan)
    with pytest.raises(IdentifierError):
        ark.mint(naan, "bc", bytes(8))


@pytest.mark.parametrize("code", ["bc", "nbc", "zj9", "0123", "bcdfghjkmnpq"])
def test_good_codes(code: str) -> None:
    assert ark.validate_code(code) == code
    assert ark.mint("13030", code, bytes(8)).library_code == code


@pytest.mark.parametrize(
    "code",
    ["", "b", "BC", "ab", "bl", "b-c", "b c", "bc\n", "北京", "b" * 17],
)
def test_bad_codes(code: str) -> None:
    with pytest.raises(IdentifierError):
        ark.validate_code(code)
    with pytest.raises(IdentifierError):
        ark.mint("13030", code, bytes(8))


def test_mint_needs_enough_entropy() -> None:
    with pytest.raises(ValueError, match="entropy"):
        ark.mint("13030", "bc", bytes(ark.ENTROPY_BYTES - 1))


# --- library codes and collisions ---------------------------------------------------------------


@given(naans_and_codes(), entropy)
def test_library_code_is_recovered_from_a_parsed_id(
    naan_code: tuple[str, str], noise: bytes
) -> None:
    naan, code = naan_code
    assert ark.parse(str(ark.mint(naan, code, noise)).upper()).library_code == code


_BLADES = st.text(ALPHABET, min_size=ark.BLADE_LENGTH, max_size=ark.BLADE_LENGTH)


def _entropy_for(blade: str) -> bytes:
    """The entropy from which `mint` draws exactly this blade."""
    n: int = sum(ALPHABET.index(c) * len(ALPHABET) ** i for i, c in enumerate(blade))
    return n.to_bytes(ark.ENTROPY_BYTES, "big")


@given(naans_and_codes(), entropy, st.data())
def test_names_of_different_library_codes_never_collide(
    naan_code: tuple[str, str], noise: bytes, data: st.DataObject
) -> None:
    naan, code1 = naan_code
    first = ark.mint(naan, code1, noise)
    stem1 = first.name[:-1]
    room = ark.MAX_CHECKED_LENGTH - len(naan) - 1 - ark.BLADE_LENGTH - 1
    # The most dangerous other codes are prefixes or extensions of this one, with blades chosen
    # so that their names spell out as much of `first` as they can.
    codes = {code1[:k] for k in range(2, len(code1))} | {stem1[:k] for k in range(2, room + 1)}
    codes = {c for c in codes if c != code1} | {data.draw(CODES_BY_ROOM[room])}
    codes.discard(code1)
    for code2 in sorted(codes):
        blade2 = (stem1[len(code2) :] + data.draw(_BLADES))[: ark.BLADE_LENGTH]
        second = ark.mint(naan, code2, _entropy_for(blade2))
        assert second.name[:-1][len(code2) :] == blade2
        assert second.name != first.name
        assert ark.parse(str(second)).library_code == code2
    assert ark.parse(str(first)).library_code == code1
