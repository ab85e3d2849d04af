"""Identifier checkers against published examples, computed ones, and every wrong check value."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.identifiers import (
    ISO_4217_CODES,
    USCC_CHARSET,
    check_container,
    check_currency,
    check_hs_code,
    check_legal_id,
    check_lei,
    check_locode,
    check_uscc,
    container_check_digit,
    lei_check_digits,
    uscc_check_char,
)

# --- ISO 6346 ---------------------------------------------------------------------------------

# CSQU3054383 is the worked example of ISO 6346 (as reproduced by BIC and
# Wikipedia: sum 6185, 6185 mod 11 = 3).  MEDU8707688 is a container number
# quoted in a public validation example.  The rest are computed here.
VALID_CONTAINERS = ["CSQU3054383", "MEDU8707688", "MSCU6639870", "CSQU3054399", "ABCJ0000010"]


@pytest.mark.parametrize("number", VALID_CONTAINERS)
def test_container_valid(number: str) -> None:
    assert check_container(number) == number


def test_container_letter_values_skip_multiples_of_eleven() -> None:
    from encd import identifiers

    values = identifiers._ISO6346_LETTER_VALUES
    assert values["A"] == 10
    assert values["B"] == 12  # 11 skipped
    assert values["L"] == 23  # 22 skipped
    assert values["V"] == 34  # 33 skipped
    assert values["Z"] == 38
    assert not [v for v in values.values() if v % 11 == 0]


def test_container_worked_example() -> None:
    # C=13, S=30, Q=28, U=32: 13 + 60 + 112 + 256 + 48 + 0 + 320 + 512 + 768 + 4096 = 6185.
    assert 6185 % 11 == 3
    assert container_check_digit("CSQU305438") == 3


def _weighted_sum(first_ten: str) -> int:
    from encd import identifiers

    values = identifiers._ISO6346_LETTER_VALUES
    return sum((values[c] if c.isalpha() else int(c)) << i for i, c in enumerate(first_ten))


def test_container_remainder_ten_gives_zero() -> None:
    # A serial whose weighted sum is 10 mod 11 takes check digit 0 (ISO 6346 advises
    # against such serials, but they exist).
    first_ten = next(
        f"CSQU{n:06d}" for n in range(1_000) if _weighted_sum(f"CSQU{n:06d}") % 11 == 10
    )
    assert container_check_digit(first_ten) == 0
    assert check_container(first_ten + "0") == first_ten + "0"


@pytest.mark.parametrize("number", VALID_CONTAINERS)
@pytest.mark.parametrize("digit", string.digits)
def test_container_every_wrong_check_digit_rejected(number: str, digit: str) -> None:
    if digit == number[10]:
        return
    wrong = number[:10] + digit
    with pytest.raises(ValueError) as exc:
        check_container(wrong)
    assert str(exc.value) == f"ISO 6346 check digit of {wrong} should be {number[10]}, got {digit}"


def test_container_message_from_the_brief() -> None:
    with pytest.raises(
        ValueError, match=r"^ISO 6346 check digit of CSQU3054384 should be 3, got 4$"
    ):
        check_container("CSQU3054384")
    # A number quoted as valid in the task brief; its check digit is in fact 0.
    with pytest.raises(
        ValueError, match=r"^ISO 6346 check digit of MSCU6639871 should be 0, got 1$"
    ):
        check_container("MSCU6639871")


SHAPE = (
    "ISO 6346 container number must be 11 characters: a 3-letter owner code, "
    "a category letter, 6 serial digits and a check digit, got "
)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("csqu3054383", SHAPE + "'csqu3054383'"),
        ("CSQU 305438 3", SHAPE + "'CSQU 305438 3'"),
        ("CSQU305438", SHAPE + "'CSQU305438'"),
        ("CSQU30543833", SHAPE + "'CSQU30543833'"),
        ("C5QU3054383", SHAPE + "'C5QU3054383'"),
        ("CSQU30543８3", SHAPE + "'CSQU30543８3'"),
        ("", SHAPE + "''"),
        ("CSQX3054383", "ISO 6346 category of CSQX3054383 should be U, J or Z, got X"),
    ],
)
def test_container_malformed(number: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_container(number)
    assert str(exc.value) == message


owner_codes = st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3)
categories = st.sampled_from("UJZ")
serials = st.integers(0, 999_999).map(lambda n: f"{n:06d}")


@given(owner_codes, categories, serials)
def test_container_computed_digit_is_the_only_one_accepted(
    owner: str, category: str, serial: str
) -> None:
    first_ten = owner + category + serial
    expected = container_check_digit(first_ten)
    for digit in string.digits:
        number = first_ten + digit
        if int(digit) == expected:
            assert check_container(number) == number
        else:
            with pytest.raises(ValueError, match="check digit"):
                check_container(number)


# --- UN/LOCODE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["CNCKG", "CNQZH", "SGSIN", "DEHAM", "NLRTM", "USNYC", "GB2LT"])
def test_locode_valid(code: str) -> None:
    assert check_locode(code) == code


@pytest.mark.parametrize(
    "code", ["cnckg", "CNCKg", "CN CKG", "CNCK", "CNCKGG", "CNCK1", "CNCK0", "C1CKG", ""]
)
def test_locode_malformed(code: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_locode(code)
    assert str(exc.value) == (
        "UN/LOCODE must be a 2-letter country code and 3 characters of A-Z or 2-9, "
        f"uppercase, without a space, got {code!r}"
    )


# --- ISO 4217 -------------------------------------------------------------------------------------


def test_currency_list_as_published() -> None:
    # ISO 4217 list one published 2026-01-01: 178 distinct alphabetic codes.
    assert len(ISO_4217_CODES) == 178
    assert all(len(c) == 3 and c.isascii() and c.isupper() for c in ISO_4217_CODES)
    # Recent changes that a stale list gets wrong.
    assert {"SLE", "VED", "ZWG", "XCG", "XAD"} <= ISO_4217_CODES
    assert not {"HRK", "SLL", "ZWL", "ANG", "CUC"} & ISO_4217_CODES


@pytest.mark.parametrize("code", ["USD", "CNY", "EUR", "SGD", "JPY", "CHF", "XAU"])
def test_currency_valid(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("HRK", "ISO 4217 currency code HRK is not an active code"),
        ("RMB", "ISO 4217 currency code RMB is not an active code"),
        ("usd", "ISO 4217 currency code must be 3 uppercase letters, got 'usd'"),
        ("US$", "ISO 4217 currency code must be 3 uppercase letters, got 'US$'"),
        ("840", "ISO 4217 currency code must be 3 uppercase letters, got '840'"),
        ("USDT", "ISO 4217 currency code must be 3 uppercase letters, got 'USDT'"),
    ],
)
def test_currency_rejected(code: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_currency(code)
    assert str(exc.value) == message


# --- GB 32100 unified social credit code ------------------------------------------------------------

# Published examples: 91512081MA62K0260E is the worked example reproduced in
# explanations of GB 32100 (remainder 17, 31 - 17 = 14 = "E");
# the others are registered codes quoted in public validators' examples.
# The 91500… codes are the fixture's, computed here (tests/data).
VALID_USCC = [
    "91512081MA62K0260E",
    "91310110666007217T",
    "91330101589882738D",
    "91350200776049653A",
    "91110107082833558H",
    "9135021359498494XQ",
    "91500000MA5UCQ7L66",
    "91500116MA60JJ3K6D",
]


def test_uscc_weights_are_powers_of_three_mod_31() -> None:
    from encd import identifiers

    assert identifiers._USCC_WEIGHTS == (
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    )  # fmt: skip
    assert USCC_CHARSET == "0123456789ABCDEFGHJKLMNPQRTUWXY"


def test_uscc_worked_example() -> None:
    values = [USCC_CHARSET.index(c) for c in "91512081MA62K0260"]
    weights = [pow(3, i, 31) for i in range(17)]
    # Some reproductions of this example print the sum as 1495, an addition slip:
    # the products add up to 1505, whose remainder 17 they then use (31 - 17 = 14 = E).
    assert sum(v * w for v, w in zip(values, weights, strict=True)) == 1505
    assert 1505 % 31 == 17
    assert uscc_check_char("91512081MA62K0260") == "E"


@pytest.mark.parametrize("code", VALID_USCC)
def test_uscc_valid(code: str) -> None:
    assert check_uscc(code) == code
    assert check_legal_id(code) == ("USCC", code)


@pytest.mark.parametrize("code", VALID_USCC)
@pytest.mark.parametrize("char", USCC_CHARSET)
def test_uscc_every_wrong_check_char_rejected(code: str, char: str) -> None:
    if char == code[17]:
        return
    wrong = code[:17] + char
    with pytest.raises(ValueError) as exc:
        check_uscc(wrong)
    assert str(exc.value) == (
        f"GB 32100 check character of {wrong} should be {code[17]}, got {char}"
    )


def test_uscc_pilot_era_code_is_rejected() -> None:
    # Some codes issued in pilot regions before GB 32100 took effect do not follow
    # its check character (this one is quoted as such by public validators).
    # encd follows the standard and refuses them.
    with pytest.raises(
        ValueError, match=r"^GB 32100 check character of 91350100M0001TGQXM should be 1, got M$"
    ):
        check_uscc("91350100M0001TGQXM")


CHARS = "unified social credit code must use only digits and capital letters other than I, O, S, V and Z, got "


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "91512081MA62K0260",
            "unified social credit code must be 18 characters, got 17: '91512081MA62K0260'",
        ),
        (
            "91512081MA62K0260E1",
            "unified social credit code must be 18 characters, got 19: '91512081MA62K0260E1'",
        ),
        ("91512081ma62k0260e", CHARS + "'m' in '91512081ma62k0260e'"),
        ("91512081MA62K026OE", CHARS + "'O' in '91512081MA62K026OE'"),
        ("91512081MA62K0260I", CHARS + "'I' in '91512081MA62K0260I'"),
        ("91512081MA62K0260S", CHARS + "'S' in '91512081MA62K0260S'"),
        ("91512081MA62K0260V", CHARS + "'V' in '91512081MA62K0260V'"),
        ("91512081MA62K0260Z", CHARS + "'Z' in '91512081MA62K0260Z'"),
        ("91512081-A62K0260E", CHARS + "'-' in '91512081-A62K0260E'"),
    ],
)
def test_uscc_malformed(code: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_uscc(code)
    assert str(exc.value) == message


@given(st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17))
def test_uscc_computed_char_is_the_only_one_accepted(first: str) -> None:
    expected = uscc_check_char(first)
    assert check_uscc(first + expected) == first + expected
    for char in USCC_CHARSET.replace(expected, ""):
        with pytest.raises(ValueError, match="check character"):
            check_uscc(first + char)


# --- ISO 17442 LEI ---------------------------------------------------------------------------------

# Published LEIs: GLEIF's own (506700GE1G29325QX363), Apple Inc.
# (HWUPKR0MPOU8FGXBT394), Deutsche Bank AG (7LTWFZYICNSX8D621K86), and examples
# from LEI libraries' documentation.  5493004XJL8RK2TQ6M58 is the fixture's.
VALID_LEI = [
    "506700GE1G29325QX363",
    "HWUPKR0MPOU8FGXBT394",
    "7LTWFZYICNSX8D621K86",
    "213800D1L3R2MWV39G88",
    "724500VKKSH9QOLTFR81",
    "5493001KJTIIGC8Y1R12",
    "5493004XJL8RK2TQ6M58",
]


def _mod97(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text)) % 97


@pytest.mark.parametrize("lei", VALID_LEI)
def test_lei_valid(lei: str) -> None:
    assert _mod97(lei) == 1
    assert check_lei(lei) == lei
    assert check_legal_id(lei) == ("LEI", lei)


@pytest.mark.parametrize("lei", VALID_LEI)
def test_lei_every_wrong_check_pair_rejected(lei: str) -> None:
    for n in range(100):
        digits = f"{n:02d}"
        if digits == lei[18:]:
            continue
        wrong = lei[:18] + digits
        with pytest.raises(ValueError) as exc:
            check_lei(wrong)
        assert str(exc.value) == (
            f"ISO 17442 check digits of {wrong} should be {lei[18:]}, got {digits}"
        )


def test_lei_published_invalid_example() -> None:
    # Quoted as invalid in the fast-lei README.
    with pytest.raises(
        ValueError, match=r"^ISO 17442 check digits of 969500T3MBS4SQAMHJ45 should be 98, got 45$"
    ):
        check_lei("969500T3MBS4SQAMHJ45")


def test_lei_check_digits_01_refused_even_though_mod_97_is_1() -> None:
    # With check digits 98 the remainder of the prefix is 0, so "01" also leaves
    # MOD 97 = 1; ISO 17442 computes 98 - remainder, so only "98" is right.
    assert lei_check_digits("969500T3MBS4SQAMHJ") == "98"
    assert _mod97("969500T3MBS4SQAMHJ01") == 1
    with pytest.raises(ValueError, match="should be 98, got 01"):
        check_lei("969500T3MBS4SQAMHJ01")
    assert check_lei("969500T3MBS4SQAMHJ98") == "969500T3MBS4SQAMHJ98"


def test_lei_generate_example() -> None:
    # From the fast-lei README: generate('969500KSV493XWY0PS') == '969500KSV493XWY0PS33'.
    assert lei_check_digits("969500KSV493XWY0PS") == "33"


@pytest.mark.parametrize(
    ("lei", "message"),
    [
        ("506700GE1G29325QX36", "LEI must be 20 characters, got 19: '506700GE1G29325QX36'"),
        (
            "506700ge1g29325qx363",
            "LEI must be 18 digits or capital letters followed by 2 check digits, got '506700ge1g29325qx363'",
        ),
        (
            "506700GE1G29325QX3A3",
            "LEI must be 18 digits or capital letters followed by 2 check digits, got '506700GE1G29325QX3A3'",
        ),
        (
            "506700GE1G29325QX36A",
            "LEI must be 18 digits or capital letters followed by 2 check digits, got '506700GE1G29325QX36A'",
        ),
    ],
)
def test_lei_malformed(lei: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_lei(lei)
    assert str(exc.value) == message


@given(st.text(alphabet=string.digits + string.ascii_uppercase, min_size=18, max_size=18))
def test_lei_computed_digits_satisfy_mod_97_10(prefix: str) -> None:
    digits = lei_check_digits(prefix)
    assert 2 <= int(digits) <= 98
    assert _mod97(prefix + digits) == 1
    assert check_lei(prefix + digits) == prefix + digits


# --- legal id ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "9150000", "91500000MA5UCQ7L6", "5493004XJL8RK2TQ6M5", "5493004XJL8RK2TQ6M580"]
)
def test_legal_id_length_names_both_schemes(value: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_legal_id(value)
    assert str(exc.value) == (
        "legal id must be an 18-character unified social credit code (GB 32100) or a "
        f"20-character LEI (ISO 17442), got {len(value)} characters: {value!r}"
    )


def test_legal_id_reports_the_scheme_error() -> None:
    with pytest.raises(ValueError, match="GB 32100 check character"):
        check_legal_id("91500000MA5UCQ7L67")
    with pytest.raises(ValueError, match="ISO 17442 check digits"):
        check_legal_id("5493004XJL8RK2TQ6M59")


# --- HS codes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["871410", "87141000", "8714100090", "000000"])
def test_hs_code_valid(code: str) -> None:
    assert check_hs_code(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "",
        "87141",
        "8714100",
        "871410009",
        "87141000901",
        "8714.10",
        "8714 10",
        "８７１４１０",
        "87141O",
    ],
)
def test_hs_code_malformed(code: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_hs_code(code)
    assert str(exc.value) == f"HS code must be 6, 8 or 10 digits, got {code!r}"


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(ValueError) as exc:
        check_hs_code("8" * 100)
    assert (
        str(exc.value) == f"HS code must be 6, 8 or 10 digits, got {'8' * 40!r}… (100 characters)"
    )
