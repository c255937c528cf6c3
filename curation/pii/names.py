"""Rules about names and places that the recognizers share: which spaCy tokens can be part of a
name, where a place goes ("in", "grew up in", "flew to"), verbs whose subject is a person, speaker
and place labels, and the name cues ("my name is", "Thanks X", "Mrs. X", "my kid X"). Split from
`recognizers.py`; word lists in `data/*.txt`."""

from __future__ import annotations

import re
from typing import Any

from curation.pii.wordlists import (
    COUNTRIES,
    KIN_WORDS,
    NOT_NAMES,
    NOT_PLACES,
    NUMBERED_WORDS,
    ORG_WORDS,
    PERSON_NOUNS,
    PERSON_VERBS,
    PLACE_PHRASES,
    PLACE_PREPS,
    PRODUCT_WORDS,
    TECH_TERMS,
    TRAVEL_VERBS,
)

_SQL_BEFORE_NAME = frozenset({"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "EXISTS", "ON"})
_NOT_PLACE_WORDS = NOT_NAMES | NOT_PLACES | NUMBERED_WORDS | TECH_TERMS | PRODUCT_WORDS
_WEAK_ENT_TYPES = {"ORG", "PRODUCT", "WORK_OF_ART"}


def _name_token(tok: Any) -> bool:
    """A token that can be part of a name: tagged proper noun, capitalised (or all capitals with 4+
    letters), letters only (initials like "R" or "J." too), not a stop word or a known non-name."""
    t = tok.text
    if tok.pos_ != "PROPN" and tok.tag_ not in ("NNP", "NNPS"):
        return False
    if tok.ent_type_ and tok.ent_type_ not in _WEAK_ENT_TYPES:
        return False  # spaCy's NER already labelled it as a name, a place, a date...
    core = t[:-1] if t.endswith(".") and len(t) == 2 else t
    if not core or not core[0].isupper() or not all(c.isalpha() or c in "-'’" for c in core):
        return False
    if core.isupper() and len(core) > 1 and len(core) < 4:
        return False  # SQL, AWS, NYC: acronyms
    return core.lower() not in NOT_NAMES and not tok.is_stop


# A place label and what follows it on its line: "Where: UPTON SCUDAMORE Country Club."
_PLACE_LABEL_RE = re.compile(
    r"(?<![\w])(?:Where|Location|City|Town|Hometown|Venue|Place of birth|Birthplace)[ \t]*:[ \t]*(?P<v>[^\n]{1,60})"
)
# A speaker label: one capitalised word and a colon at the start of the text, of a line, or after
# a sentence ("Ella: ...", 'Koppány: "Who are you?" Elizabeth:"I'm ...').
_SPEAKER_RE = re.compile(
    r"""(?:^|(?<=\n)|(?<=[.!?][ \t])|(?<=[.!?]["”'][ \t]))[ \t]*([^\W\d_][^\W\d_'’\-]+):(?=[ \t]*["“]?\S)"""
)


def _place_before(doc: Any, k: int) -> bool:
    """Whether the words before token k make it a place: "in", "from", "near" (data/place_preps.txt),
    a verb of travel + "to"/"at" ("flew to", "arrived at"), "University of" (data/place_phrases.txt)."""
    prev = [t.lower_ for t in doc[max(0, k - 2) : k]]
    if prev and doc[k - 1].text.isupper():
        return False  # "SELECT * FROM Users": a keyword, not a preposition
    return bool(prev) and (
        prev[-1] in PLACE_PREPS
        or (len(prev) == 2 and prev[-1] in ("to", "at") and prev[0] in TRAVEL_VERBS)
        or " ".join(prev) in PLACE_PHRASES
    )


def _caps_word(tok: Any) -> bool:
    """A word of four or more capital letters (any script) that is no known term or acronym."""
    t = tok.text
    return (
        len(t) >= 4
        and t.isupper()
        and all(c.isalpha() or c in "-'’" for c in t)
        and not tok.is_stop
        and t.casefold() not in _NOT_PLACE_WORDS
        and tok.ent_type_ in ("", *_WEAK_ENT_TYPES, "GPE", "LOC", "NORP", "PERSON")
    )


_THINGS_DO_TOO = frozenset(
    {"lives", "lived", "moved", "flew", "grew", "met", "visited", "travelled", "traveled", "loves", "loved"}
)


def _before_person_verb(doc: Any, k: int, strict: bool = False) -> bool:
    """Whether token k (and an auxiliary after it: "had given", "was born") is a verb whose subject
    is a person (data/person_verbs.txt). `strict` (the word before was tagged a common noun): not
    the verbs a thing can do too ("Water moved", "Legacy lives on"), except "lives on/at/in" before
    a capitalised word or a number ("Timotea lives on Via dei Fiorentini 17")."""
    if k < len(doc) and doc[k].pos_ == "AUX" and k + 1 < len(doc):
        k += 1
    if not (k < len(doc) and doc[k].lower_ in PERSON_VERBS and doc[k].pos_ in ("VERB", "AUX")):
        return False
    if strict and doc[k].lower_ in _THINGS_DO_TOO:
        nxt = doc[k + 1 : k + 3]
        return (
            doc[k].lower_ in ("lives", "lived")
            and len(nxt) == 2
            and nxt[0].lower_ in ("on", "at", "in")
            and (nxt[1].text[:1].isupper() or nxt[1].text[:1].isdigit())
        )
    return True


def _name_cue_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    cue = (
        r"(?i:\b(?:(?:my|his|her|their|your|our)[ \t]+(?:(?:full|first|last|maiden|middle|given|family)[ \t]+)?"
        r"name[ \t]*(?:is|was|:)|(?:last|first|full|sur)[ \t]*name[ \t]*[?:]|(?:call|calls|called)[ \t]+me))[ \t]+"
    )
    cased = r"(?P<v>\p{Lu}[\p{L}'’\-]+(?:[ \t]+\p{Lu}\.?(?!\w))?(?:[ \t]+\p{Lu}[\p{L}'’\-]+){0,2})"
    lower = r"(?P<v>\p{Ll}[\p{L}'’\-]+(?:[ \t]+\p{Ll}[\p{L}'’\-]+)?)(?=[ \t]*(?:[.,!?;\n]|$|[ \t]+but\b))"
    # "Thanks Oluwaseun." / "Hi Anjali," / "Dear Mr Okafor": one capitalised word after a greeting or
    # a thank-you, closed by punctuation or the end of the line
    greet = (
        r"(?i:\b(?:thanks|thank[ \t]+you|thx|cheers|hi|hello|hey|dear|regards|bye))[ \t]*,?[ \t]+"
        r"(?P<v>\p{Lu}\p{Ll}[\p{L}'’\-]+)(?=[ \t]*(?:[.,!?;:\n]|$))"
    )
    # "Hi, I am Margaret Hollingsworth" / "this is Dana Ruiz": a self-introduction, capitalised only
    # (a customer's name recurs in every turn of a thread: the corpus-level check must not drop it)
    intro = r"(?:\b(?:I[ \t]+am|I['’]m|[Tt]his[ \t]+is)[ \t]+)"
    # Chinese, Japanese and Korean "my name is X": no spaces around the name, so the cue and what
    # closes it (punctuation; です / と申します; 입니다) mark its ends
    cjk = (
        r"(?:(?:我叫|我的名字(?:是|叫))(?P<v>\p{Han}{2,4}?)(?=[，,。.！!？?；;、\s]|$)"
        r"|(?:私の名前は|名前は)(?P<v>[\p{Han}\p{Katakana}ー・]{2,8}?)(?:です|と申します|といいます|と言います)"
        r"|(?:제|내|저의)[ \t]*이름은[ \t]*(?P<v>\p{Hangul}{2,4}?)(?:입니다|이에요|예요|이라고|라고))"
    )
    # "Mrs. Diana Usamov", "ms. Quinzia", "Dr Okafor" (and "mr. elliott" in all-lowercase text)
    honorific = r"(?:\b(?i:mr|mrs|ms|mx|dr|prof)\.?|\b(?:Miss|Mme|Mlle|Herr|Frau)\b)[ \t]+"
    # "my kid Tadzio", "her husband Ravi"; "I'm Amanda's daughter"
    kin = "|".join(sorted((re.escape(w) for w in KIN_WORDS), key=len, reverse=True))
    relative = rf"(?i:\b(?:my|his|her|our|their|your)[ \t]+(?:{kin}))[ \t]+"
    possessive = rf"(?P<v>\p{{Lu}}[\p{{L}}\-]+)['’]s[ \t]+(?i:(?:{kin}))\b"
    return [
        ("honorific", rx.compile(honorific + cased), 0.6, "v"),
        ("lowercase_honorific", rx.compile(honorific + r"(?P<v>\p{Ll}[\p{L}'’\-]+)"), 0.6, "v"),
        ("relative", rx.compile(relative + cased), 0.6, "v"),
        ("possessive_relative", rx.compile(possessive), 0.6, "v"),
        ("cjk", rx.compile(cjk), 0.6, "v"),
        ("cased", rx.compile(cue + cased), 0.6, "v"),
        ("introduction", rx.compile(intro + cased + r"(?=[ \t]*(?:[.,!?;:\n]|$|[ \t]+and\b))"), 0.6, "v"),
        ("lowercase", rx.compile(cue + lower), 0.6, "v"),
        ("greeting", rx.compile(greet), 0.6, "v"),
    ]


def _cue_spans(text: str) -> list[tuple[int, int]]:
    """The spans the name cues point at ("my name is X", "Thanks X", "Mrs. X", "my kid X")."""
    global _CUE_RULES
    if _CUE_RULES is None:
        import regex

        _CUE_RULES = [(rx, g) for _, rx, _, g in _name_cue_rules(regex)]
    return [(m.start(g), m.end(g)) for rx, g in _CUE_RULES for m in rx.finditer(text) if m.start(g) >= 0]


_CUE_RULES: list[tuple[Any, str | int]] | None = None


# Countries (data/countries.txt) whose lowercase form is an everyday English word: only capitalised
# they are places.
_COMMON_WORD_COUNTRIES = frozenset({"chad", "china", "guinea", "jersey", "turkey", "jordan", "georgia"})
# Directions written before a country ("Southern Italy"): the place is the country.
DIRECTIONS = frozenset({"southern", "northern", "eastern", "western", "central", "south", "north", "east", "west"})


def country_rule(rx: Any) -> Any:
    """One regex for every country name of data/countries.txt, any case, whole words; which matches
    count is decided by `country_accepted`."""
    alts = "|".join(r"[ \t]+".join(rx.escape(w) for w in c.split()) for c in sorted(COUNTRIES, key=len, reverse=True))
    return rx.compile(rf"(?i)(?<![\w\-.@/])(?:{alts})(?![\w\-]|\.\w)")


def country_accepted(text: str, start: int, end: int) -> bool:
    """A country as written: every word capitalised (small words such as "and", "of" aside) or all
    capitals ("SOUTH AFRICA"); in lowercase only after a place preposition ("moved here from
    tunisia") and not an everyday word ("turkey")."""
    words = text[start:end].split()
    if all(w[0].isupper() or w.casefold() in ("and", "of", "the", "da", "de") or w[:2] == "d'" for w in words):
        return True
    if text[start:end].casefold() in _COMMON_WORD_COUNTRIES or any(c.isupper() for c in text[start:end]):
        return False
    before = re.findall(r"[\w']+", text[max(0, start - 30) : start].casefold())[-2:]
    return bool(before) and (before[-1] in PLACE_PREPS or " ".join(before) in PLACE_PHRASES)


def country_part(text: str, start: int, end: int) -> int | None:
    """Where the country of a "Southern Italy" span starts (None when the span is no direction +
    country, or is a country as a whole: "South Africa")."""
    span = text[start:end]
    if span.casefold() in COUNTRIES:
        return None
    m = re.match(r"(\w+)[ \t]+", span)
    if m and m.group(1).casefold() in DIRECTIONS and span[m.end() :].casefold() in COUNTRIES:
        return start + m.end()
    return None


def _person_predicate(doc: Any, k: int) -> bool:
    """Whether the words from token k say what kind of person the word before is: "is a very
    sympathetic person", "was an engineer" (data/person_nouns.txt)."""
    if not (k < len(doc) and doc[k].lower_ in ("is", "was")):
        return False
    for t in doc[k + 1 : k + 6]:
        if t.lower_ in PERSON_NOUNS and t.pos_ == "NOUN":
            return True
        if t.pos_ not in ("DET", "ADJ", "ADV"):
            return False
    return False


def _initial_then_surname(doc: Any, j: int) -> bool:
    """Whether token j is the surname after a name that ends in an initial ("Elita B Desaulniers",
    "Eric G. Samoylova"): capitalised letters on the same line, whatever the tagger made of it."""
    prev, t = doc[j - 1], doc[j]
    core = prev.text.rstrip(".")
    return (
        len(core) == 1
        and core.isupper()
        and "\n" not in prev.whitespace_
        and t.text[:1].isupper()
        and t.is_alpha
        and len(t.text) > 1
        and not t.is_stop
        and t.lower_ not in NOT_NAMES
    )


def speaker_labels(text: str) -> list[tuple[int, int]]:
    """The speaker labels of a transcript ("Ella: ... Destiny: ..."): capitalised, two or more of
    them, none a common word ("Expected:", "Note:")."""
    labels = [m.span(1) for m in _SPEAKER_RE.finditer(text) if m.group(1)[0].isupper()]
    labels = [(a, b) for a, b in labels if text[a:b].casefold() not in NOT_NAMES]
    return labels if len(labels) >= 2 else []


# Dialogue attribution: 'said Gladys to Logan', 'Zak shouted at Scott:' — the speaker and the one
# spoken to are people, however the tagger read the words.
_ADDRESSED_RE = re.compile(
    r"\b(?:(?:said|says|whispered|replied|explained|complained)[ \t]+(?P<a>[^\W\d_][^\W\d_'’\-]+)[ \t]+to"
    r"|(?:shouted|yelled|screamed|snapped|glared|smiled|winked)[ \t]+at)[ \t]+(?P<b>[^\W\d_][^\W\d_'’\-]+)(?![\w\-])"
)


def addressed_names(text: str) -> list[tuple[int, int]]:
    """The capitalised names of a dialogue attribution ("said Erle to Maurice", "shouted at Scott")."""
    out = []
    for m in _ADDRESSED_RE.finditer(text):
        for g in ("a", "b"):
            w = m.group(g)
            if w and w[0].isupper() and w[1:].islower() and w.casefold() not in _NOT_PLACE_WORDS:
                out.append(m.span(g))
    return out


# A contact block: a line of two to four name-like words (after bullets, quote marks or a label such
# as "billing address:"), then within the next lines an address, a phone number or an e-mail.
_BLOCK_LINE_RE = re.compile(r"[^\n]*")
_BLOCK_PREFIX_RE = re.compile(r"[ \t>?*\-]*(?:[^\W\d_]+(?:[ \t][^\W\d_]+){0,2}[ \t]*:[ \t]*)?")
_BLOCK_WORD_RE = re.compile(r"[^\W\d_][^\W\d_'’\-]+|[^\W\d_]\.?")
_NOT_NAME_WORDS = NOT_NAMES | _NOT_PLACE_WORDS | ORG_WORDS | PERSON_NOUNS | COUNTRIES


def contact_block_names(
    text: str, contacts: list[tuple[int, int]], taken: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The name heading a contact block on the text's first line ("kristin crnić\n\n98 árpád fejedelem útja 45.", "billing
    address: tracy sukhorukova\n 23 8 wressle road"): a line of two to four name-like words (letters,
    initials; no stop word, no known term) with an address, phone number or e-mail (`contacts`)
    starting on one of the next four lines, and nothing found on it yet (`taken`)."""
    if not contacts:
        return []
    from spacy.lang.en.stop_words import STOP_WORDS

    out = []
    lines = [(m.start(), m.end()) for m in _BLOCK_LINE_RE.finditer(text) if m.end() > m.start()]
    for k, (a, b) in enumerate(lines):
        if text[:a].strip():
            break  # the block's heading is the text's first line (the next ones: job title, company)
        a += _BLOCK_PREFIX_RE.match(text, a, b).end() - a  # type: ignore[union-attr]
        body = text[a:b].rstrip(" \t.,;")
        words = body.split()
        if not 2 <= len(words) <= 4 or any(a <= s < b or s <= a < e for s, e in taken):
            continue
        if not all(_BLOCK_WORD_RE.fullmatch(w) for w in words) or sum(len(w) > 2 for w in words) < 2:
            continue
        if len({w[0].isupper() for w in words if len(w) > 2}) > 1:
            continue  # "Leasing consultant": a phrase in sentence case, not a name
        if any(w.casefold().rstrip(".") in STOP_WORDS or w.casefold() in _NOT_NAME_WORDS for w in words):
            continue
        nxt = lines[k + 1 : k + 5]
        if nxt and any(nxt[0][0] <= s <= nxt[-1][1] for s, _ in contacts):
            out.append((a, a + len(body)))
    return out
