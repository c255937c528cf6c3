"""Sift's own Presidio recognizers (secrets, street addresses, phone formats, card digits near "card",
names after "my name is", runs of proper nouns, offline e-mail, deny list) and their rules.
Word lists live in `data/*.txt` (see `wordlists`)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

from curation.pii.addresses import LEAD_UNIT, address_rules, extend_address_tail, has_street_word
from curation.pii.config import DENY_LIST_ENTITY, PiiError
from curation.pii.names import (
    _NOT_PLACE_WORDS,
    _PLACE_LABEL_RE,
    _SQL_BEFORE_NAME,
    _before_person_verb,
    _caps_word,
    _cue_spans,
    _initial_then_surname,
    _name_cue_rules,
    _name_token,
    _person_predicate,
    _place_before,
    addressed_names,
    country_accepted,
    country_rule,
    speaker_labels,
)
from curation.pii.wordlists import (
    CUE_STOP,
    NAME_PARTICLES,
    NOT_NAMES,
    ORG_WORDS,
    PRODUCT_WORDS,
    TECH_TERMS,
)


def _recognizer_classes() -> dict[str, Any]:
    """Sift's recognizers, defined on first use so that importing this module needs no Presidio."""
    try:
        import regex
        from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
        from presidio_analyzer.predefined_recognizers import EmailRecognizer
    except ImportError as e:  # pragma: no cover - the core install has Presidio
        raise PiiError(f"PII detection needs presidio-analyzer and spaCy (pip install -e .): {e}") from None

    class _Regexes(EntityRecognizer):
        """Base: a list of (name, compiled regex, score, group) run over the text."""

        ENTITY = ""
        RULES: Sequence[tuple[str, Any, float, str | int]] = ()
        CONTEXT: Sequence[str] = ()

        def __init__(self) -> None:
            super().__init__(
                supported_entities=[self.ENTITY],
                supported_language="en",
                name=type(self).__name__,
                context=list(self.CONTEXT),
            )

        def load(self) -> None:
            pass

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            return True

        def enhance_using_context(
            self, text: str, raw_recognizer_results: list[Any], *args: Any, **kw: Any
        ) -> list[Any]:
            return _context_boost(text, raw_recognizer_results, self.CONTEXT, RecognizerResult)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            out = []
            for name, rx, score, group in self.RULES:
                for m in rx.finditer(text):
                    s, e = m.span(group)
                    if e <= s or not self.accept(name, text, s, e):
                        continue
                    out.append(
                        RecognizerResult(
                            self.ENTITY,
                            s,
                            e,
                            score,
                            analysis_explanation=AnalysisExplanation(type(self).__name__, score, pattern_name=name),
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                                "rule": name,
                            },
                        )
                    )
            return out

    class SecretRecognizer(_Regexes):
        ENTITY = "SECRET"
        RULES = tuple(_secret_rules(regex))

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            if name != "assignment":
                return True
            value = text[start:end]
            # "password: <redacted>", "api_key=YOUR_KEY_HERE": placeholders, not secrets.
            if value.startswith("<") or value.isupper() or "your" in value.lower() or "xxx" in value.lower():
                return False
            return (_entropy(value) >= 2.5 and any(c.isdigit() for c in value)) or _entropy(value) >= 3.5

    class StreetAddressRecognizer(_Regexes):
        ENTITY = "STREET_ADDRESS"
        RULES = tuple(address_rules(regex))
        CONTEXT = (
            "address",
            "live",
            "lives",
            "located",
            "street",
            "corner",
            "meet",
            "deliver",
            "ship",
            "send",
            "return",
            "moved",
            "office",
            "offices",
            "visit",
            "stop",
        )

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            if name == "cue_number_words":
                # a street word, or two capitalised words: "10 percent of capacity" is no address; after
                # a bare "is at" / "it's in", a street word and a capitalised word ("is at 9816 214 Pavlou Drandaki")
                words = regex.findall(r"\p{L}[\p{L}'’\-]*\.?", text[start:end])
                caps = sum(w[0].isupper() for w in words)
                weak = regex.search(r"(?i)(?:\bis|\bit['’]s)[ \t]+(?:at|in)[ \t]+$", text[max(0, start - 12) : start])
                if weak:
                    return caps >= 2 and (has_street_word(text[start:end]) or caps >= 3)
                return has_street_word(text[start:end]) or caps >= 2
            if name != "place_postal":
                return True
            words = regex.findall(r"[\p{L}'’\-]+", text[max(0, start - 80) : start])
            place = list(itertools.takewhile(lambda w: w.casefold() not in ("in", "from", "near", "at"), words[::-1]))
            return bool(place) and not any(w.casefold() in _NOT_PLACE_WORDS for w in place)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            recased = False
            if not any(c.isupper() for c in text):
                # All-lowercase text (chat users type like that): match on a copy with capitalised
                # words, which has the same length and offsets.
                cased = regex.sub(r"\b\p{Ll}", lambda m: m.group().upper(), text)
                if len(cased) == len(text):
                    text, recased = cased, True
            results = super().analyze(text, entities, nlp_artifacts)
            if recased:  # "in room 1021": a place needs its capital letters; so do street names without a street
                # word, and words before a house number ("please return to 45 aðalgata 37")
                results = [
                    r
                    for r in results
                    if r.recognition_metadata.get("rule") != "place_postal"
                    and (
                        r.recognition_metadata.get("rule") != "name_number"
                        or regex.match(r"\d|(?i:apt|apartment|suite|ste|unit)\b", text[r.start : r.end])
                    )
                    and (
                        r.recognition_metadata.get("rule") != "cue_number_words"
                        or has_street_word(text[r.start : r.end])
                    )
                ]
            for r in results:
                if r.recognition_metadata.get("rule") in ("zip_code", "place_postal"):
                    continue
                if r.recognition_metadata.get("rule") == "cue_number_words" and text[r.end - 1] == ".":
                    last = text[r.start : r.end - 1].split()[-1]
                    if last.isdigit() or len(last) > 3:
                        r.end -= 1  # the full stop of the sentence, not of an abbreviation ("St.")
                r.end, added = extend_address_tail(regex, text, r.end)
                lead = LEAD_UNIT.search(text[max(0, r.start - 24) : r.start])
                if lead:
                    r.start -= len(lead.group())  # "Suite 913 0547 Bygget 91": the unit written first
                if added >= 2 and r.score < 0.6:
                    # street, then city / region / postal code: the shape of an address
                    r.score = 0.6
                    r.analysis_explanation.set_improved_score(0.6)
            return results

    class PhonePatternRecognizer(_Regexes):
        """National formats the phonenumbers matcher skips: digit groups with separators."""

        ENTITY = "PHONE_NUMBER"
        RULES = tuple(_phone_rules(regex))
        CONTEXT = (
            "phone",
            "number",
            "telephone",
            "tel",
            "cell",
            "mobile",
            "call",
            "fax",
            "desk",
            "reach",
            "contact",
            "whatsapp",
            "sms",
            "text",
            "dial",
            "ring",
            "answering",
            "messages",
            "registered",
            "office",
        )

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            number = regex.split(r"(?i)x|ext", text[start:end])[0]
            digits = sum(c.isdigit() for c in number)
            return 7 <= digits <= 15 and not _DATE_LIKE.fullmatch(number.strip())

    class CardNumberRecognizer(_Regexes):
        """12-19 digits that fail Presidio's checksum but sit next to the word "card"."""

        ENTITY = "CREDIT_CARD"
        RULES = (("card_digits", regex.compile(r"(?<![\w\-.])\d{4}(?:[ \-]?\d){8,15}(?![\w\-]|\.\d)"), 0.2, 0),)
        CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "cc")

    class CountryRecognizer(_Regexes):
        """Country names (data/countries.txt): the small NER model misses many ("Slovenia leader
        gives ...") or calls them people."""

        ENTITY = "LOCATION"
        RULES = (("country", country_rule(regex), 0.7, 0),)

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            return country_accepted(text, start, end)

    class LowercaseIbanRecognizer(_Regexes):
        """IBANs typed in lower case ("my iban is gb42nawi0445..."), which Presidio's recognizer
        (upper case only) skips: reported only when the ISO 13616 mod-97 checksum holds."""

        ENTITY = "IBAN_CODE"
        RULES = (
            (
                "lowercase_iban",
                regex.compile(r"(?<![\w\-])[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,4})?(?![\w\-])"),
                0.9,
                0,
            ),
        )

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            return _iban_checksum_ok(text[start:end])

    class NameCueRecognizer(_Regexes):
        """The word(s) after "my name is", "call me", "last name?": a name even if the NER model does
        not know it, and even in all-lowercase text."""

        ENTITY = "PERSON"
        RULES = tuple(_name_cue_rules(regex))

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            words = text[start:end].split()
            if name.startswith("lowercase") and any(c.isupper() for c in text):
                return False
            if not words:
                return False
            first = words[0].lower()
            return not (first in NOT_NAMES or first in CUE_STOP or first in TECH_TERMS or first in PRODUCT_WORDS)

    class ProperNounRecognizer(EntityRecognizer):
        """Runs of proper nouns (spaCy's tagger) that its NER left unlabelled: mostly names and
        places the small model does not know (Sölvi Salómonsson, KNIVSTA). A place after "in",
        "from", "near" or a verb of travel + "to"; a person otherwise. Scored below spaCy's own
        entities (0.85), so a PERSON/LOCATION threshold above 0.4 switches it off."""

        SCORE = 0.4
        CONTEXT = (
            "name",
            "call",
            "called",
            "said",
            "says",
            "told",
            "ask",
            "asked",
            "mr",
            "mrs",
            "ms",
            "dr",
            "dear",
            "hi",
            "hello",
            "thanks",
            "regards",
            "contact",
            "colleague",
            "manager",
            "customer",
            "user",
            "account",
            "city",
            "town",
            "country",
            "live",
            "lives",
            "born",
            "from",
        )

        def __init__(self) -> None:
            super().__init__(
                supported_entities=["PERSON", "LOCATION"],
                supported_language="en",
                name="ProperNounRecognizer",
                context=list(self.CONTEXT),
            )

        def load(self) -> None:
            pass

        def enhance_using_context(
            self, text: str, raw_recognizer_results: list[Any], *args: Any, **kw: Any
        ) -> list[Any]:
            return _context_boost(text, raw_recognizer_results, self.CONTEXT, RecognizerResult)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            doc = getattr(nlp_artifacts, "tokens", None)
            if doc is None or not len(doc):
                return []
            out = []
            held: list[Any] = []
            i, n = 0, len(doc)
            while i < n:
                if not _name_token(doc[i]):
                    t = doc[i]
                    if (
                        "PERSON" in entities
                        and (i == 0 or t.is_sent_start)
                        and t.text[:1].isupper()
                        and t.text[1:].islower()
                        and t.is_alpha
                        and not t.is_stop
                        and t.lower_ not in _NOT_PLACE_WORDS
                        and _before_person_verb(doc, i + 1, strict=True)
                    ):
                        # "Timotea lives on Via dei Fiorentini": the tagger read the name as a noun
                        out.append(self._result("PERSON", t.idx, t.idx + len(t.text)))
                        i += 1
                        continue
                    j = i
                    while j < n and _caps_word(doc[j]) and (j == i or "\n" not in doc[j - 1].whitespace_):
                        j += 1
                    if j > i and "LOCATION" in entities and _place_before(doc, i) and doc[i - 1].text.islower():
                        # "grew up in HELSINKI", "I am in ΛΕΥΚΩΣΙΑ": a capitalised place the tagger read
                        # as a common noun (not shouting: the word before is lowercase)
                        out.append(self._result("LOCATION", doc[i].idx, doc[j - 1].idx + len(doc[j - 1].text)))
                    i = max(j, i + 1)
                    continue
                j = i + 1
                while (
                    j < n
                    and (
                        _name_token(doc[j])
                        or (doc[j].lower_ in NAME_PARTICLES and j + 1 < n and _name_token(doc[j + 1]))
                        # "Lara  Fiorentino": a second space inside the name
                        or (doc[j].is_space and "\n" not in doc[j].text and j + 1 < n and _name_token(doc[j + 1]))
                    )
                    and "\n" not in doc[j - 1].whitespace_
                    and not doc[j - 1].is_punct
                ):
                    j += 1
                if j < n and j - i >= 2 and _initial_then_surname(doc, j):
                    j += 1  # "Elita B Desaulniers": the surname after an initial, however it was tagged
                span = doc[i:j]
                i = j
                if span.start and doc[span.start - 1].text in _SQL_BEFORE_NAME:
                    continue  # "SELECT * FROM Users": a table, not a person or a place
                place = _place_before(doc, span.start)
                if any(t.ent_type_ for t in span):
                    # spaCy's small model calls many foreign names and places organisations: keep a run it
                    # labelled that way only if it looks like a name (two or more words) or sits where a
                    # place goes ("grew up in KNIVSTA", "flew to Loeches"), and has no company word.
                    names = [t for t in span if t.lower_ not in NAME_PARTICLES and not t.is_space]
                    if any(t.lower_ in ORG_WORDS for t in span) or (
                        len(names) < 2 and span[0].lower_ in _NOT_PLACE_WORDS
                    ):
                        continue
                    if len(names) < 2 and not place:
                        if len(span) == 1 and not span[0].text.isupper():
                            if _before_person_verb(doc, span.end) or _person_predicate(doc, span.end):
                                out.append(self._result("PERSON", span.start_char, span.end_char))
                            else:
                                held.append(span)  # a name if it stands in a list with one ("Torpy and Salinas")
                        continue
                if len(span) == 1 and (span[0].is_sent_start or span[0].i == 0) and not span[0].text.isupper():
                    # a lone capitalised word that starts a sentence is usually just a capitalised word,
                    # unless a colon or comma marks it as an address (Alice: ..., Vide, can I ...) or a
                    # verb follows (Dexter lives on ...)
                    nxt = doc[span.end] if span.end < n else None
                    if nxt is None or not (nxt.text in (":", ",") or nxt.pos_ in ("VERB", "AUX")):
                        continue
                entity = "LOCATION" if place else "PERSON"
                if entity == "PERSON" and all(t.text.isupper() for t in span):
                    continue  # EXPLAIN ANALYZE, URGENT: shouting and keywords, not names
                if entity not in entities:
                    continue
                out.append(self._result(entity, span.start_char, span.end_char))
            if held and "PERSON" in entities:
                out += self._listed_with_names(doc, held, out)
            if "PERSON" in entities:
                out += self._speakers(text, doc, out)
                out += [self._result("PERSON", a, b) for a, b in addressed_names(text)]
            if "LOCATION" in entities:
                out += self._labelled_places(text, out)
            return out

        def _labelled_places(self, text: str, found: list[Any]) -> list[Any]:
            """The capitalised words after a place label ("Where: Beerze Country Club", "City: Oslo"),
            up to a venue or organisation word."""
            out = []
            for m in _PLACE_LABEL_RE.finditer(text):
                words = []
                for w in regex.finditer(r"\S+", m.group("v")):
                    core = w.group().strip(".,;:!?")
                    if (
                        not core
                        or not core[0].isupper()
                        or core.casefold() in ORG_WORDS
                        or core.casefold() in ("country", "county")
                    ):
                        break
                    words.append(w)
                    if core != w.group():
                        break
                if not words or any(x.group().strip(".,;:!?").casefold() in _NOT_PLACE_WORDS for x in words):
                    continue
                a = m.start("v") + words[0].start()
                b = m.start("v") + words[-1].start() + len(words[-1].group().rstrip(".,;:!?"))
                if not any(r.start <= a and b <= r.end for r in found):
                    out.append(self._result("LOCATION", a, b))
            return out

        def _speakers(self, text: str, doc: Any, found: list[Any]) -> list[Any]:
            """A transcript: two or more speaker labels ("Ella: What a wife. Destiny: Remember me,
            Maria?") in a text where a person is named are names, however the tagger read them."""
            labels = speaker_labels(text)
            if not labels:
                return []
            people = [(e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON"] + _cue_spans(text)
            people += [(r.start, r.end) for r in found if r.entity_type == "PERSON"]
            if not people:
                return []
            return [self._result("PERSON", a, b) for a, b in labels if not any(s <= a and b <= e for s, e in people)]

        def _listed_with_names(self, doc: Any, held: list[Any], found: list[Any]) -> list[Any]:
            """Held one-word runs in a list of names: items joined by "," / "and" / "&", one of them a
            person (spaCy's PERSON or a name found here) and the list three items long or that person
            two words long ("Eklund, Michael and Hodge", "Ana Lima and Torpy"; not "Wisdom and
            Discipline", where spaCy's one-word PERSON is itself a guess)."""
            unit: dict[int, tuple[int, int, bool]] = {}  # token index -> (first, last + 1, is a person)

            def put(a: int, b: int, is_person: bool) -> None:
                for k in range(a, b):
                    unit[k] = (a, b, is_person)

            for span in held:
                put(span.start, span.end, False)
            for e in doc.ents:
                if e.label_ == "PERSON":
                    put(e.start, e.end, True)
            for r in found:
                if r.entity_type == "PERSON":
                    toks = [t.i for t in doc if r.start <= t.idx < r.end]
                    if toks:
                        put(toks[0], toks[-1] + 1, True)
            seps = {",", "and", "&"}
            out: list[Any] = []
            for span in held:
                items = [unit[span.start]]
                for step in (-1, 1):
                    a, b, _ = unit[span.start]
                    k = a - 1 if step < 0 else b
                    while True:
                        j = k
                        while 0 <= j < len(doc) and doc[j].lower_ in seps and abs(j - k) < 2:
                            j += step
                        if j == k or not 0 <= j < len(doc) or j not in unit:
                            break
                        items.append(unit[j])
                        k = unit[j][0] - 1 if step < 0 else unit[j][1]
                people = [x for x in items if x[2]]
                if people and (len(items) >= 3 or any(b - a >= 2 for a, b, _ in people)):
                    out.append(self._result("PERSON", span.start_char, span.end_char))
            return out

        def _result(self, entity: str, start: int, end: int) -> Any:
            return RecognizerResult(
                entity,
                start,
                end,
                self.SCORE,
                analysis_explanation=AnalysisExplanation(type(self).__name__, self.SCORE, pattern_name="proper_noun"),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer with a tldextract that never reaches for the network."""

        def __init__(self) -> None:
            import tldextract

            super().__init__(name="EmailRecognizer")
            # The bundled public-suffix snapshot only: no download, no cache directory.
            self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

        def validate_result(self, pattern_text: str) -> bool:
            return self._tld(pattern_text).fqdn != ""

    class DenyListRecognizer(EntityRecognizer):
        def __init__(self, terms: Sequence[str]) -> None:
            super().__init__(supported_entities=[DENY_LIST_ENTITY], supported_language="en", name="DenyListRecognizer")
            alts = "|".join(regex.escape(t) for t in sorted(set(terms), key=len, reverse=True) if t)
            self._rx = regex.compile(rf"(?<!\w)(?:{alts})(?!\w)", regex.IGNORECASE) if alts else None

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if self._rx is None:
                return []
            return [
                RecognizerResult(
                    DENY_LIST_ENTITY,
                    m.start(),
                    m.end(),
                    1.0,
                    analysis_explanation=AnalysisExplanation(type(self).__name__, 1.0),
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
                for m in self._rx.finditer(text)
            ]

    return {
        "SecretRecognizer": SecretRecognizer,
        "StreetAddressRecognizer": StreetAddressRecognizer,
        "PhonePatternRecognizer": PhonePatternRecognizer,
        "OfflineEmailRecognizer": OfflineEmailRecognizer,
        "CardNumberRecognizer": CardNumberRecognizer,
        "ProperNounRecognizer": ProperNounRecognizer,
        "NameCueRecognizer": NameCueRecognizer,
        "LowercaseIbanRecognizer": LowercaseIbanRecognizer,
        "CountryRecognizer": CountryRecognizer,
        "DenyListRecognizer": DenyListRecognizer,
    }


def _iban_checksum_ok(value: str) -> bool:
    """ISO 13616: move the country code and check digits to the end, letters to 10..35, mod 97 == 1."""
    v = value.replace(" ", "").upper()
    if not 15 <= len(v) <= 34 or not v.isalnum():
        return False
    digits = "".join(str(int(c, 36)) for c in v[4:] + v[:4])
    return int(digits) % 97 == 1


_WORD_RE = re.compile(r"\w+")
CONTEXT_BOOST = 0.35


def _context_boost(text: str, results: list[Any], words: Sequence[str], result_cls: Any) -> list[Any]:
    """Raise a result's score by CONTEXT_BOOST when one of `words` is among the six words before it
    or the two after it ("call me on ...", "... -Fax"). Presidio's own enhancer compares lemmas
    that are not stop words, and spaCy counts "call" and "name" as stop words."""
    if not words:
        return results
    vocab = set(words)
    for r in results:
        before = _WORD_RE.findall(text[max(0, r.start - 80) : r.start].lower())[-6:]
        after = _WORD_RE.findall(text[r.end : r.end + 30].lower())[:2]
        hit = next((w for w in (*reversed(before), *after) if w in vocab), None)
        if hit is None:
            continue
        r.score = min(1.0, max(r.score + CONTEXT_BOOST, 0.4))
        r.recognition_metadata[result_cls.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        if r.analysis_explanation is not None:
            r.analysis_explanation.set_supportive_context_word(hit)
            r.analysis_explanation.set_improved_score(r.score)
    return results


def _entropy(s: str) -> float:
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in (s.count(ch) for ch in set(s)))


def _secret_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    c = rx.compile
    return [
        (
            "private_key",
            c(
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            ),
            1.0,
            0,
        ),
        ("bearer", c(r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)"), 0.9, "v"),
        ("basic_auth", c(r"(?i)\bauthorization:\s*basic\s+(?P<v>[A-Za-z0-9+/]{12,}=*)"), 0.9, "v"),
        ("jwt", c(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 0.95, 0),
        ("aws_access_key", c(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"), 0.95, 0),
        ("github_token", c(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"), 0.95, 0),
        ("openai_key", c(r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?[A-Za-z0-9_\-]{20,}"), 0.9, 0),
        ("slack_token", c(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), 0.95, 0),
        ("google_api_key", c(r"\bAIza[0-9A-Za-z_\-]{35}"), 0.95, 0),
        ("stripe_key", c(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"), 0.95, 0),
        ("hf_token", c(r"\bhf_[A-Za-z0-9]{30,}\b"), 0.9, 0),
        ("url_password", c(r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<v>[^\s@/]{3,})@"), 0.85, "v"),
        (
            "assignment",
            c(
                r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?(?:key|token)|auth[_-]?token|token|"
                r"client[_-]?secret|password|passwd|pwd)\b[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;]{8,})"
            ),
            0.7,
            "v",
        ),
    ]


_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?")


def _phone_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    return [
        (
            "digit_groups",
            rx.compile(
                r"(?<![\w+\-.])(?:\+\d{1,3}[ \t.\-]?)?(?:\(0?\d{1,4}\)[ \t.\-]?)?\d{2,4}(?:[ \t.\-]\d{2,4}){0,3}[ \t.\-]\d{2,6}(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?(?!\w|-\d|\.\d)"
            ),
            0.3,
            0,
        ),
        ("compact", rx.compile(r"(?<![\w+\-.])\+\d{9,14}(?![\w\-]|\.\d)"), 0.5, 0),
    ]
