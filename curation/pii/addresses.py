"""Street addresses: the rules that find an address (house number, street word, unit, postal code)
and extend a found address over its tail (unit, city, region, postal code, country on the next
lines). Split from `recognizers.py`, which builds the analyzer's recognizers from these rules."""

from __future__ import annotations

import re
from typing import Any

_STREET_TYPES = (
    "street|st|avenue|ave|av|road|rd|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl|terrace|terr|"
    "crescent|cres|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail|trl|close|grove|gardens|greens?|pass|"
    "loop|route|rte|rt|crossroads?|crossing|radial|alley|walk|mews|pike|plaza|ridge|expressway|expy|freeway|"
    "turnpike|tpke|extension|ext|commons|heights|junction|jct|causeway|row|quay|wharf|esplanade|promenade|"
    "vale|view|point|park|hill|hills|center|centre|mall|station|creek|landing|manor|meadows?|oval|path|"
    "spur|summit|trace|track|village|villas?|wynd|glen|green"
)
# Suffixes that make a single word a street name in European languages (Friedhofstrasse, Harjukuja).
_STREET_SUFFIXES = (
    "straße|strasse|str\\.|gasse|weg|allee|platz|ring|damm|ufer|steig|vej|vejen|gade|gaden|stræde|vägen|väg|"
    "gatan|gata|gränd|veien|vegen|vei|veg|gata|katu|tie|kuja|polku|raitti|kaari|rinne|laan|straat|gracht|"
    "plein|kade|singel|dreef|utca|út|útja|tér|körút|sor|braut|gata|stígur|vegur|ulica|ulice|aleja|náměstí|"
    "třída|tänav|iela|gatvė|cesta|ulitsa|caddesi|sokak|sokağı|u\\.|krt\\.|rkp\\.|gate|tee"
)
# Words that start a street name in Romance, Slavic and Greek addresses (Via Roma 131, ul. Grochowa 80).
_STREET_PREFIXES = (
    "via|viale|vicolo|piazza|piazzale|corso|largo|strada|rua|avenida|av\\.|travessa|praça|largo|rue|"
    "boulevard|bd|chemin|allée|impasse|place|quai|route|calle|carrer|avinguda|plaza|paseo|camino|ronda|"
    "ul\\.|ulica|al\\.|aleja|os\\.|pl\\.|ulitsa|odos|leoforos|rruga|bulevar|bulevardul|strada|str\\.|"
    "calea|piața|splaiul|šetalište|trg|obala"
)


def address_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    # \p{Lu}: a capital in any script, so Östbygatan and Rákóczi count as names.
    cap = r"(?:\p{Lu}[\p{L}'’\-]*\.?)"
    particle = (
        r"(?:de|del|della|delle|dello|dei|degli|di|da|do|dos|das|du|des|la|le|les|van|von|der|den|het|y|e|i|el|al)"
    )
    num = r"(?:\d{1,6}[A-Za-z]?(?:[\-/]\d{1,4}[A-Za-z]?)?)"
    name = rf"(?:{cap}(?:[ \t]+(?:{cap}|{particle}|\d{{1,3}}(?:st|nd|rd|th)?)){{0,4}})"
    return [
        # 24 Clarke Avenue, 13858 Rt 31 W, 66-4 Parkhurst Rd, 3784 Archwood Avenue St.
        (
            "number_street_type",
            rx.compile(
                rf"(?<![\w.\-/:]){num}(?:[ \t]+{num})?[ \t]+(?:(?i:{_STREET_PREFIXES})[ \t]+)?{name}[ \t]+(?i:(?:{_STREET_TYPES}))\.?(?!\w)"
                rf"(?:[ \t]+\d{{1,4}}(?:[ \t]+[NSEW])?(?!\w))?"
            ),
            0.6,
            0,
        ),
        # 13858 Rt 31 W, 250 Rt 59: numbered routes
        (
            "route",
            rx.compile(
                r"(?<![\w.\-/:])\d{1,6}[ \t]+(?i:rt|rte|route|hwy|highway|us|sr|state[ \t]+route|county[ \t]+road)\.?[ \t]+\d{1,4}(?:[ \t]+[NSEW])?(?!\w)"
            ),
            0.6,
            0,
        ),
        # 780 Lynnway, 12 Broadway: the street type glued to the name
        (
            "number_glued_type",
            rx.compile(
                rf"(?<![\w.\-/:]){num}[ \t]+(?:{cap}[ \t]+){{0,2}}\p{{Lu}}\p{{Ll}}+(?:way|street|avenue|road)(?!\w)"
            ),
            0.5,
            0,
        ),
        # Friedhofstrasse 33, 6750 Koskikatu 25, Brucker Bundesstrasse 31, Rákóczi út 13.
        (
            "suffix_street_number",
            rx.compile(
                rf"(?<![\w.\-/:])(?:{num}[ \t]+)?(?:{cap}[ \t]+){{0,2}}(?:\p{{L}}[\p{{L}}\-]*(?i:{_STREET_SUFFIXES})|{cap}[ \t]+(?i:{_STREET_SUFFIXES}))"
                rf"[ \t]+{num}(?!\w)"
            ),
            0.6,
            0,
        ),
        # Via Roma 131, Rua Diadema 1903, ul. Grochowa 80, Rue de Virton 38
        (
            "prefix_street_number",
            rx.compile(
                rf"(?<![\w.\-/:])(?:{num}[ \t]+){{0,2}}(?i:{_STREET_PREFIXES})[ \t]+(?:(?:{cap}|{particle})[ \t]+){{0,4}}?{cap}[ \t]+{num}(?!\w)"
            ),
            0.6,
            0,
        ),
        # P.O. Box 242, PO Box 104, Postbox 53 (with the house number or postal code before it)
        (
            "po_box",
            rx.compile(
                rf"(?<![\w.\-/:])(?:{num}[ \t]+)?(?i:P\.?[ \t]?O\.?[ \t]*Box|Post[ \t]*box|Post[ \t]+Office[ \t]+Box)[ \t]+\d{{1,6}}(?!\w)"
            ),
            0.6,
            0,
        ),
        # PSC 3294, Box 9168 APO AA 61487; Unit 8524 Box 0979 DPO AA 56703; USS Lorenzen FPO AE 25990
        (
            "military",
            rx.compile(
                r"(?i)\b(?:(?:PSC|Unit|CMR)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}|(?:USNS|USNV|USS|USCGC)[ \t]+\p{L}+(?:[ \t]+\p{L}+)?)"
                r"(?:\s*,?\s*[ADF]PO[ \t]+A[AEP][ \t]+\d{5})?\b"
            ),
            0.7,
            0,
        ),
        # the corner of Beiteveien 2 and Sieda Radial
        (
            "corner",
            rx.compile(
                rf"(?i:\b(?:the[ \t]+)?corner[ \t]+of)[ \t]+(?:{num}[ \t]+)?{name}(?:[ \t]+{num})?\.?[ \t]+(?i:and|&)[ \t]+(?:{num}[ \t]+)?{name}(?:[ \t]+{num})?"
            ),
            0.6,
            0,
        ),
        # ZIP: 7412 SL, my zip code is 2371
        (
            "zip_code",
            rx.compile(
                r"(?i:\b(?:zip|postal|post)(?:[ \t]*code)?(?:[ \t]+is)?[ \t]*[:#]?)[ \t]*"
                r"(?P<v>\d{3,6}(?:[ \-]\d{2,4})?(?:[ \t]+\p{Lu}{2})?|\p{Lu}\d\p{Lu}[ \t]?\d\p{Lu}\d|\p{Lu}{1,2}\d[\dA-Z]?[ \t]?\d\p{Lu}{2})(?!\w)"
            ),
            0.6,
            "v",
        ),
        # the postal code after a place: "in Bjert 6091", "from Quinta de São Tiago 3610-114" (not a
        # year, not a version: "in Windows 2019", "Python 3.12"); the place's words are checked in accept
        (
            "place_postal",
            rx.compile(
                rf"(?<=\b(?:in|from|near|at)[ \t]+{cap}(?:[ \t]+(?:{cap}|{particle})){{0,3}}[ \t]+)"
                r"(?P<v>(?!(?:19|20)\d\d(?!\d))\d{4,5}|\d{3}[ \-]\d{2}|\d{4}-\d{3})(?![\w\-]|[.,:/]\d)"
            ),
            0.5,
            "v",
        ),
        # After "lives at", "drops you off at", "address:": a house number and the words up to the
        # end of the clause ("lives at 846 31 Rue Al Imam Al Bakri, Cite Merzgui")
        (
            "cue_number_words",
            rx.compile(
                r"(?i:\b(?:lives?|living|located|situated|resides?|residing|(?:drops?|dropped)[ \t]+(?:you|me|us|them)[ \t]+off)[ \t]+(?:at|on)"
                r"|\baddress(?:[ \t]+is|[ \t]*:)|(?<=\b(?:is|it['’]s))[ \t]+(?:at|in))[ \t]+"
                r"(?P<v>\d{1,6}[A-Za-z]?(?:[ \t]+\d{1,5})?(?:[ \t]+(?:\p{L}[\p{L}'’\-]*\.?|\d{1,5}\.?)){2,7})"
                r"(?=[ \t]*(?:[,;!?\n]|\.(?!\w)|$))"
            ),
            0.6,
            "v",
        ),
        # A house number and street, then a unit: "9791 Markt 84 Apt. 597" on one line (capitalised
        # words and the number after them: not "3 Kafka Brokers Suite 4"), or "770 26 rue des lieutemants Thomazo" on a line of its own above "Apt. 735"
        (
            "street_unit",
            rx.compile(
                rf"(?<![\w.\-/:]){num}(?:[ \t]+{num})?[ \t]+{cap}(?:[ \t]+{cap}){{0,2}}[ \t]+{num}"
                r"[ \t]+(?i:apt|apartment|suite|ste)\.?[ \t]*\d{1,5}(?!\w)"
            ),
            0.6,
            0,
        ),
        (
            "street_line_unit",
            rx.compile(
                rf"(?m)(?<=^[ \t>?*\-]*){num}(?:[ \t]+{num})?[ \t]+\p{{L}}[\p{{L}}'’\-.]*(?:[ \t]+[\p{{L}}\d][\p{{L}}'’\-.]*){{0,5}}"
                r"(?=[ \t]*,?[ \t]*\n[ \t>?*\-]*(?i:apt|apartment|suite|ste|unit)\.?[ \t]*\d)"
            ),
            0.6,
            0,
        ),
        # Two numbers then capitalised words ("63 30 N. Stadion"): weak alone; an address when a context
        # word or a city / postal-code tail follows (see the tail extension)
        (
            "number_number_name",
            rx.compile(rf"(?<![\w.\-/:]){num}[ \t]+{num}[ \t]+{cap}(?:[ \t]+{cap}){{0,3}}(?!\w)"),
            0.2,
            0,
        ),
        # Capitalised words then a house number (Pagari 18, Tungata 11): weak alone, needs context.
        (
            "name_number",
            rx.compile(rf"(?<![\w.\-/:])(?:{num}[ \t]+)?{cap}(?:[ \t]+{cap}){{0,2}}[ \t]+{num}(?!\w|[.,:]\d)"),
            0.2,
            0,
        ),
    ]


_TAIL_UNIT = r"(?:[ \t]*(?:,?[ \t]*(?:\n[ \t>?*\-]*)?|\.[ \t]*\n[ \t>?*\-]*)(?:(?i:apt|apartment|suite|ste|unit|fl|floor|room|rm|bldg|building)\.?(?![^\W\d_])|#)[ \t]*(?=[\w\-]{0,5}\d|\w{1,2}(?!\w))[\w\-]{1,6}\.?)"


_STREET_WORD_RE = re.compile(rf"(?i)(?<!\w)(?:{_STREET_TYPES}|{_STREET_PREFIXES})(?!\w)|\w(?:{_STREET_SUFFIXES})(?!\w)")


def has_street_word(s: str) -> bool:
    return _STREET_WORD_RE.search(s) is not None


LEAD_UNIT = re.compile(
    r"(?<![\w.])(?i:apt|apartment|suite|ste|unit)\.?[ \t]*\d[\w\-]{0,5}[ \t]*,?[ \t]*(?:\n[ \t>]*)?\Z"
)


def extend_address_tail(rx: Any, text: str, end: int) -> tuple[int, int]:
    """Stretch an address over what follows it: unit, city, region code, country and postal code,
    on the same line after commas or on the next lines (quoted with ">" too). Returns the new end
    and how many segments were added: a street followed by a city and a postal code is an address
    even without a word like "address" nearby."""
    cap = r"(?:\p{Lu}[\p{L}'’\-.]*(?!\w))"
    cap_words = rf"(?:{cap}(?:[ \t]+(?:{cap}|\(\p{{L}}+\)|(?:de|del|di|du|da|do|nad|u|am|an|im|la|le|sur|sous|on|upon)(?=[ \t]))){{0,3}})"
    # a postal code, but not the first digit groups of a phone number on the next line ("085 175 7641")
    postal = r"(?:\d{2}-\d{3}|\d{3,6}(?:[ \-]\d{2,4})?(?:[ \t]+\p{Lu}{2}(?!\w))?|\p{Lu}\d\p{Lu}[ \t]?\d\p{Lu}\d|\p{Lu}{1,2}\d[\dA-Z]?[ \t]?\d\p{Lu}{2})(?!\w|[ \t.\-]\d)"
    region = r"(?:\p{Lu}{2,3}|nan)(?!\w)"
    seg = rf"(?:{postal}|{region}|{cap_words})"
    newline = r"\n[ \t>?*\-]*"
    end_of_line = r"(?=[ \t]*(?:\n|$))"
    steps = [
        rx.compile(_TAIL_UNIT),
        # after one blank line: only a last line of country and postal code ("\n\n Estonia 62488")
        rx.compile(rf"[ \t]*\n[ \t>?*\-]*\n[ \t>?*\-]*(?:{cap_words}[ \t]+)?{postal}{end_of_line}"),
        # after a comma or a line break: any address segment
        rx.compile(rf"[ \t]*(?:,[ \t]*(?:{newline})?|{newline}(?:,[ \t]*)?)(?:{seg})"),
        # on the same line, only what cannot be ordinary prose: region codes and postal codes, or a
        # district number that ends the line ("Kaplice 1", "Praha 4")
        rx.compile(rf"[ \t]+(?:{region}(?:[ \t]+{postal})?|{postal}|\d{{1,2}}{end_of_line})"),
    ]
    added = 0
    for _ in range(8):
        for step in steps:
            m = step.match(text, end)
            if m and m.end() > end:
                end = m.end()
                added += 1
                break
        else:
            break
    return end, added
