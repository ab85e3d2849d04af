"""Checkers for the standard identifiers an eNCD carries.

Each checker takes a string and returns it when it is a well-formed identifier
in its normal form, or raises ``ValueError`` with a message that says what was
expected and what was given.  Nothing is normalized on the way in: a lowercase
or spaced-out identifier is refused, not repaired, so that the value checked is
the value signed and the value compared for cargo singularity.

==============  ===========================  =====================================
identifier      standard                     check
==============  ===========================  =====================================
container       ISO 6346                     owner code, category U/J/Z, serial,
                                             check digit (weights 2**i, mod 11)
location        UN/LOCODE                    shape: country + 3 of [A-Z2-9]
currency        ISO 4217                     in the list of active codes
party (China)   GB 32100-2015 (USCC)         18 chars, check char (weights
                                             3**i mod 31, GB/T 17710 mod 31)
party (world)   ISO 17442 (LEI)              20 chars, ISO 7064 MOD 97-10
goods           Harmonized System            6, 8 or 10 digits
==============  ===========================  =====================================
"""

from __future__ import annotations

import re
import string
from typing import Literal

__all__ = [
    "ISO_4217_CODES",
    "USCC_CHARSET",
    "LegalIdScheme",
    "check_container",
    "check_currency",
    "check_hs_code",
    "check_legal_id",
    "check_lei",
    "check_locode",
    "check_uscc",
    "container_check_digit",
    "lei_check_digits",
    "uscc_check_char",
]


def _show(value: str, limit: int = 40) -> str:
    """``value`` quoted for a message, cut short when long."""
    if len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value)} characters)"
    return repr(value)


# --- ISO 6346 freight container numbers -------------------------------------------------

# Letters count from 10, skipping 11, 22 and 33 (multiples of 11): A=10, B=12, …, Z=38.
_ISO6346_LETTER_VALUES: dict[str, int] = {}
_next = 10
for _letter in string.ascii_uppercase:
    if _next % 11 == 0:
        _next += 1
    _ISO6346_LETTER_VALUES[_letter] = _next
    _next += 1
del _next, _letter

_CONTAINER_SHAPE = re.compile(r"[A-Z]{3}[A-Z][0-9]{7}")
_CONTAINER_CATEGORIES = "UJZ"


def container_check_digit(first_ten: str) -> int:
    """The ISO 6346 check digit of an owner code, category and serial number (10 characters)."""
    total = 0
    for i, ch in enumerate(first_ten):
        value = _ISO6346_LETTER_VALUES[ch] if ch.isalpha() else int(ch)
        total += value << i
    return total % 11 % 10


def check_container(value: str) -> str:
    """An ISO 6346 container number such as ``CSQU3054383``, check digit verified."""
    if not _CONTAINER_SHAPE.fullmatch(value):
        raise ValueError(
            "ISO 6346 container number must be 11 characters: a 3-letter owner code, "
            f"a category letter, 6 serial digits and a check digit, got {_show(value)}"
        )
    if value[3] not in _CONTAINER_CATEGORIES:
        raise ValueError(f"ISO 6346 category of {value} should be U, J or Z, got {value[3]}")
    expected = container_check_digit(value[:10])
    if int(value[10]) != expected:
        raise ValueError(f"ISO 6346 check digit of {value} should be {expected}, got {value[10]}")
    return value


# --- UN/LOCODE ----------------------------------------------------------------------------

_LOCODE_SHAPE = re.compile(r"[A-Z]{2}[A-Z2-9]{3}")


def check_locode(value: str) -> str:
    """A UN/LOCODE such as ``CNCKG`` (Chongqing); the shape only, not the code list."""
    if not _LOCODE_SHAPE.fullmatch(value):
        raise ValueError(
            "UN/LOCODE must be a 2-letter country code and 3 characters of A-Z or 2-9, "
            f"uppercase, without a space, got {_show(value)}"
        )
    return value


# --- ISO 4217 currencies -------------------------------------------------------------------

# ISO 4217 list one (current currency and funds codes), as published by the
# maintenance agency (SIX) on 2026-01-01.  Includes fund codes (e.g. USN, CLF),
# precious metals (XAU, …), the testing code XTS and XXX (no currency), as the
# list does.  Update from the next published list; tests pin the count.
# (Kept as one block of text so that a diff against the published list is easy to read.)
ISO_4217_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK
    DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD
    NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA
    XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905
)


def check_currency(value: str) -> str:
    """An active ISO 4217 alphabetic currency code such as ``USD``."""
    if value not in ISO_4217_CODES:
        if re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"ISO 4217 currency code {value} is not an active code")
        raise ValueError(f"ISO 4217 currency code must be 3 uppercase letters, got {_show(value)}")
    return value


# --- GB 32100-2015 unified social credit code (USCC) ---------------------------------------

# The code's characters: digits and capital letters without I, O, S, V and Z.
# A character's value is its position in this string (A=10, …, Y=30).
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Weight of position i (0-based) is 3**i mod 31: 1, 3, 9, 27, 19, 26, 16, 17, 20, …
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_SHAPE = re.compile(f"[{USCC_CHARSET}]{{18}}")


def uscc_check_char(first_seventeen: str) -> str:
    """The GB 32100 check character of the first 17 characters of a USCC."""
    if len(first_seventeen) != 17:
        raise ValueError(f"expected the first 17 characters of a USCC, got {len(first_seventeen)}")
    weighted = zip(first_seventeen, _USCC_WEIGHTS, strict=True)
    total = sum(USCC_CHARSET.index(ch) * w for ch, w in weighted)
    return USCC_CHARSET[(31 - total % 31) % 31]


def check_uscc(value: str) -> str:
    """A China unified social credit code (GB 32100-2015), check character verified.

    Only the 18th character is verified.  The 17th, the check character of the
    embedded GB 11714 organization code, is not: codes issued in pilot regions
    before the standard do not always follow it.
    """
    if len(value) != 18:
        raise ValueError(
            f"unified social credit code must be 18 characters, got {len(value)}: {_show(value)}"
        )
    if not _USCC_SHAPE.fullmatch(value):
        bad = next(ch for ch in value if ch not in USCC_CHARSET)
        raise ValueError(
            "unified social credit code must use only digits and capital letters other "
            f"than I, O, S, V and Z, got {bad!r} in {_show(value)}"
        )
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        raise ValueError(
            f"GB 32100 check character of {value} should be {expected}, got {value[17]}"
        )
    return value


# --- ISO 17442 legal entity identifier (LEI) -------------------------------------------------

_LEI_SHAPE = re.compile(r"[A-Z0-9]{18}[0-9]{2}")


def _mod97(text: str) -> int:
    """ISO 7064 MOD 97-10 remainder of ``text`` with letters read as 10 (A) to 35 (Z)."""
    return int("".join(str(int(ch, 36)) for ch in text)) % 97


def lei_check_digits(first_eighteen: str) -> str:
    """The two ISO 17442 check digits for the first 18 characters of an LEI."""
    return f"{98 - _mod97(first_eighteen + '00'):02d}"


def check_lei(value: str) -> str:
    """An ISO 17442 legal entity identifier, its MOD 97-10 check digits verified."""
    if len(value) != 20:
        raise ValueError(f"LEI must be 20 characters, got {len(value)}: {_show(value)}")
    if not _LEI_SHAPE.fullmatch(value):
        raise ValueError(
            "LEI must be 18 digits or capital letters followed by 2 check digits, "
            f"got {_show(value)}"
        )
    # MOD 97-10 alone would also pass "01" where the check digits are "98";
    # ISO 17442 computes them as 98 - (n mod 97), so 02..98 and exactly one pair.
    expected = lei_check_digits(value[:18])
    if value[18:] != expected:
        raise ValueError(
            f"ISO 17442 check digits of {value} should be {expected}, got {value[18:]}"
        )
    return value


# --- a party's legal identifier ------------------------------------------------------------

LegalIdScheme = Literal["USCC", "LEI"]


def check_legal_id(value: str) -> tuple[LegalIdScheme, str]:
    """A party's legal identifier: a USCC (18 characters) or an LEI (20), as (scheme, value)."""
    if len(value) == 18:
        return "USCC", check_uscc(value)
    if len(value) == 20:
        return "LEI", check_lei(value)
    raise ValueError(
        "legal id must be an 18-character unified social credit code (GB 32100) or a "
        f"20-character LEI (ISO 17442), got {len(value)} characters: {_show(value)}"
    )


# --- Harmonized System codes ------------------------------------------------------------------

_HS_SHAPE = re.compile(r"[0-9]{6}(?:[0-9]{2}){0,2}")


def check_hs_code(value: str) -> str:
    """A Harmonized System code: 6 digits, or a national 8- or 10-digit extension."""
    if not _HS_SHAPE.fullmatch(value):
        raise ValueError(f"HS code must be 6, 8 or 10 digits, got {_show(value)}")
    return value
