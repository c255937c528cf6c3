"""Detection: run the analyzer over texts in batches (distinct texts once, spaCy `nlp.pipe`, forked
workers) and turn its results into spans and per-conversation findings."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from curation.pii.config import DENY_LIST_ENTITY, PiiConfig
from curation.pii.fields import message_fields
from curation.pii.names import _cue_spans, contact_block_names, country_accepted, country_part, speaker_labels
from curation.pii.recognizers import _recognizer_classes
from curation.pii.spans import Finding, Span, resolve_overlaps
from curation.pii.wordlists import (
    COUNTRIES,
    FILE_EXTENSIONS,
    NAME_PARTICLES,
    NATO,
    NOT_NAMES,
    ORG_WORDS,
    PRODUCT_WORDS,
    TECH_TERMS,
)
from curation.progress import Progress
from curation.records import Conversation, sha256_hex

_IDENTIFIER_RE = re.compile(r"\d|\w[._]\w|[/=@:<>{}\[\]\\|`$#]|[a-z][A-Z]{2}")


def looks_like_a_name(s: str) -> bool:
    """False for what an NER model calls a person or place but is code or jargon: identifiers
    (qdb.backup, eu-west-1), acronyms (JSON), product names with inner capitals (QuillDB)."""
    s = s.strip()
    if len(s) < 2 or _IDENTIFIER_RE.search(s):
        return False
    words = s.split()
    if len(words) == 1 and s.isupper() and len(s) <= 4:
        return False
    return any(c.isalpha() for c in s)


_WORDS_RE = re.compile(r"[\w'’\-]+")
_LETTERS_RE = re.compile(r"[^\W\d_]+")
_CAMEL_RE = re.compile(r"[a-z]{3}[A-Z]")
_CODE_BEFORE = set("<[{_/\\.@#$`")
_CODE_AFTER = set("<[{_/\\`(")
_NOT_IPS = ("0.0.0.0", "255.255.255.255", "127.0.0.1", "::1", "::")


def name_evidence_against(text: str, start: int, end: int) -> str | None:
    """Why a PERSON / LOCATION span is not a name, or None: no capital letter (unfamiliar lowercase
    vocabulary), a technology or product word (data/tech_terms.txt, data/product_words.txt), a NATO
    spelling, a greeting or reply word, or code around it (`Arc<Mutex<`, `String.length()`)."""
    span = text[start:end]
    if not any(c.isupper() for c in span) and not any(ord(c) > 0x2E7F for c in span):
        return "lowercase"
    words = [w.casefold() for w in _WORDS_RE.findall(span)]
    if any(w in TECH_TERMS or w in PRODUCT_WORDS for w in _LETTERS_RE.findall(span.casefold())):
        return "product"
    if _CAMEL_RE.search(span):
        return "identifier"  # ValueError, ClickHouse, OpenTelemetry (but McDonald, DeShawn, MacKenzie pass)
    if words and all(w in NATO for w in words) and (len(words) > 1 or _nato_run(text, start, end)):
        return "spelling"
    if len(words) == 1 and words[0] in NOT_NAMES:
        return "common_word"
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if before in _CODE_BEFORE or after in _CODE_AFTER or (after == "." and text[end + 1 : end + 2].isalnum()):
        return "code"
    return None


def _nato_run(text: str, start: int, end: int) -> bool:
    near = [w.casefold() for w in _WORDS_RE.findall(text[max(0, start - 30) : end + 30])]
    return sum(w in NATO for w in near) >= 3


def url_evidence_against(text: str, start: int, end: int) -> str | None:
    """Why a URL span is a file or a dotted name rather than an address, or None."""
    url = text[start:end]
    if (end < len(text) and (text[end].isalnum() or text[end] == "_")) or (
        start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.")
    ):
        return "dotted_name"  # "qdb.re" inside "qdb.replication": a dotted name cut at a TLD
    if "://" in url or url.casefold().startswith("www."):
        return None
    labels = url.split("/", 1)[0].split(".")
    if labels[-1].casefold() in FILE_EXTENSIONS or len(labels[0]) == 1:
        return "file_name"
    return None


_QUALIFIER_RE = re.compile(r"[ \t]?\(([^\W\d_][\w'’\-]*(?:[ \t][^\W\d_][\w'’\-]*)?)\)")
_PLACE_PARTICLE_RE = re.compile(
    r"[ \t]+(?:nad|pod|am|upon|sur|sous|de|del|di|da|do|la|le)[ \t]+([^\W\d_][\w'’\-]*(?:[ \t][A-Z][\w'’\-]*)?)"
)
_WORD_GAP_RE = re.compile(r"(\s*)(\S+)")
_LEADING_WORD_RE = re.compile(r"(\S+)\s+")
_EMAIL_LOCAL = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


def _trim_start(text: str, entity: str, start: int, end: int) -> int:
    """Where a name, place or e-mail really starts: an NER span that opens with lowercase words
    ("mein Name", "the White Stripes") starts at its first capitalised word or name particle; an
    e-mail matched straight after CJK text ("我的邮箱是wang@example.cn") starts at its ASCII local part."""
    if entity == "EMAIL_ADDRESS":
        while start < end and "@" in text[start + 1 : end] and text[start] not in _EMAIL_LOCAL:
            start += 1
        return start
    if entity in ("PERSON", "LOCATION") and any(c.isupper() for c in text[start:end]):
        while m := _LEADING_WORD_RE.match(text, start, end):
            word = m.group(1)
            if not word[:1].islower() or word in NAME_PARTICLES:
                break
            start = m.end()
    return start


# Recognizers whose own rules already decide that a span is a name or a place (a cue, a country
# list): the precision filters for NER guesses (lowercase, common word) do not apply to them.
_LENIENT = ("NameCueRecognizer", "CountryRecognizer", "ContactBlockRecognizer")


def _to_spans(results: Iterable[Any], text: str, config: PiiConfig, allow: set[str]) -> list[Span]:
    spans = []
    cues: list[tuple[int, int]] | None = None
    for r in results:
        if r.score < config.threshold(r.entity_type):
            continue
        name = (r.recognition_metadata or {}).get("recognizer_name") or "unknown"
        if r.entity_type in ("PERSON", "LOCATION"):
            r.start, r.end = _one_line(text, r.start, r.end)
            if text[r.start : r.end].casefold() in COUNTRIES:
                r.entity_type = "LOCATION"  # "Cyprus", "Austria": the NER's person is a country
                if country_accepted(text, r.start, r.end):
                    name = "CountryRecognizer"  # the country list vouches for it ("from tunisia")
            elif (c := country_part(text, r.start, r.end)) is not None:
                r.entity_type, r.start = "LOCATION", c  # "serving Southern Italy": the place is Italy
        if r.entity_type == "PERSON" and name != "NameCueRecognizer":
            # Presidio keeps one result per span: where the NER found the very name a cue points at
            # ("mr. elliott"), the cue's leniency (lowercase, recurring) applies to it
            cues = _cue_spans(text) if cues is None else cues
            first = text[r.start : r.end].split()[0].casefold() if text[r.start : r.end].split() else ""
            if (r.start, r.end) in cues and first not in TECH_TERMS and first not in PRODUCT_WORDS:
                name = "NameCueRecognizer"  # (not a product: "I am Vicuna, a language model")
        # judged whole first: "macOS Sonoma" is a product, not "macOS" + a name
        if (
            r.entity_type in ("PERSON", "LOCATION")
            and name not in _LENIENT
            and (not looks_like_a_name(text[r.start : r.end]) or name_evidence_against(text, r.start, r.end))
        ):
            if r.entity_type == "PERSON":
                # the NER glued a cued name to its neighbours ('Heather:"I'm Daniel's daughter'): keep the
                # name the cue points at
                cues = _cue_spans(text) if cues is None else cues
                spans += [
                    Span(a, b, "PERSON", 0.6, "NameCueRecognizer")
                    for a, b in cues
                    if r.start <= a
                    and b <= r.end
                    and (a, b) != (r.start, r.end)
                    and text[a:b].strip().casefold() not in allow
                ]
                # ...and a transcript's speaker label inside it ('Heather:"I'm')
                spans += [
                    Span(a, b, "PERSON", 0.4, "ProperNounRecognizer")
                    for a, b in speaker_labels(text)
                    if r.start <= a and b <= r.end and text[a:b].casefold() not in allow
                ]
            continue
        if r.entity_type == "PERSON" and name != "NameCueRecognizer":
            org = next(
                (m for m in _WORD_GAP_RE.finditer(text, r.start, r.end) if m.group(2).casefold() in ORG_WORDS), None
            )
            if org is not None:
                if org.start() == r.start or org.group(1) == " ":
                    continue  # "Hall Orchestra", "Border Force": a body, not a person
                r.end = org.start()  # "Silvia J Křenová  Airport tower controller": the next field
        r.start = _trim_start(text, r.entity_type, r.start, r.end)
        if r.entity_type == "LOCATION" and (q := _QUALIFIER_RE.match(text, r.end)) and q.group(1)[0].isupper():
            r.end = q.end()  # "Cyprus (Greek)", "Unionville (Orange)": the qualifier is part of the name
        if r.entity_type == "LOCATION" and (q := _PLACE_PARTICLE_RE.match(text, r.end)) and q.group(1)[0].isupper():
            r.end = q.end()  # "Ústí nad Labem", "Frankfurt am Main": the rest of the place's name
        if r.entity_type in ("PERSON", "LOCATION") and (
            not looks_like_a_name(text[r.start : r.end])
            or (name not in _LENIENT and name_evidence_against(text, r.start, r.end))
        ):
            continue
        if r.entity_type == "URL" and url_evidence_against(text, r.start, r.end):
            continue
        if r.entity_type == "IP_ADDRESS" and text[r.start : r.end] in _NOT_IPS:
            continue  # "bind to 0.0.0.0", localhost: not anybody's address
        if allow and text[r.start : r.end].strip().casefold() in allow:
            continue
        spans.append(Span(r.start, r.end, r.entity_type, round(float(r.score), 4), name))
    contacts = [(s.start, s.end) for s in spans if s.entity in _CONTACT_ENTITIES]
    if contacts and "PERSON" in config.entities and config.threshold("PERSON") <= _BLOCK_SCORE:
        taken = [(s.start, s.end) for s in spans]
        spans += [
            Span(a, b, "PERSON", _BLOCK_SCORE, "ContactBlockRecognizer")
            for a, b in contact_block_names(text, contacts, taken)
            if text[a:b].casefold() not in allow
        ]
    return resolve_overlaps(spans + _same_name_again(text, spans, allow))


_CONTACT_ENTITIES = ("STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS")
_BLOCK_SCORE = 0.4


def drop_titles(text: str, spans: list[Span]) -> list[Span]:
    """The spans of one text without the PERSON spans that are part of a title (`_a_title`). Run
    after the corpus-level count, which counts every report of a recurring title."""
    return [s for s in spans if s.recognizer in _LENIENT or not _a_title(text, s, spans)]


# Function words that headline case capitalises ("5 Musicians Of The 70s You're Supposed To Hate")
_TITLE_SMALL_WORDS = frozenset({"of", "the", "to", "and", "for", "in", "on", "with", "a", "an", "at", "by", "from"})
_TITLE_WORD_RE = re.compile(r"[^\W\d_][\w'’]*")
_QUOTED_RE = re.compile(r'["“]([^"”\n]{1,80})["”]')


def _a_title(text: str, s: Span, spans: list[Span]) -> bool:
    """Whether a PERSON span is part of a title, not a person: a proper-noun run that labels a line
    ("2. Feature Selection: ...", "**Catering:**"; not a transcript's speaker), words of a headline-cased phrase
    (two capitalised function words nearby that do not open a sentence, a quote or a bracket:
    "Guilty Pleasures: 5 Musicians Of The 70s"), or of a quoted title of capitalised words
    followed by "by" ('"Tube Snake Boogie" by ...') or longer than the span ('"The Shawshank
    Redemption"'; a quoted name alone stays a name: '"director": "Francis Ford Coppola"')."""
    if s.entity != "PERSON":
        return False
    line_start = text.rfind("\n", 0, s.start) + 1
    if (
        s.recognizer == "ProperNounRecognizer"
        and _LABEL_BEFORE_RE.fullmatch(text, line_start, s.start)
        and _LABEL_AFTER_RE.match(text, s.end)
        and (s.start, s.end) not in speaker_labels(text)
    ):
        return True  # "2. Feature Selection: ...", "**Catering:**": a heading, not a speaker
    line_end = text.find("\n", s.end)
    line_end = len(text) if line_end < 0 else line_end
    small = 0
    for w in _TITLE_WORD_RE.finditer(text, max(line_start, s.start - 60), min(line_end, s.end + 60)):
        before = text[line_start : w.start()].rstrip()[-1:]
        if w.group()[0].isupper() and w.group().casefold() in _TITLE_SMALL_WORDS and before and before not in _OPENERS:
            small += 1
    if small >= 2:
        return True
    for q in _QUOTED_RE.finditer(text, line_start, line_end):
        if q.start(1) <= s.start and s.end <= q.end(1):
            words = q.group(1).split()
            by = re.match(r"[ \t]*by\b", text[q.end() : q.end() + 6]) is not None
            longer = text[q.start(1) : q.end(1)].strip(" .,!?") != text[s.start : s.end]
            return len(words) >= 2 and all(w[0].isupper() for w in words) and (by or longer)
    return False


# A heading label at the start of a line: bullets, a list number or markdown before it, a colon after
_LABEL_BEFORE_RE = re.compile(r"[ \t]*(?:[-*•>#]+|\d{1,3}[.)]|[A-Za-z][.)])?[ \t]*(?:\*\*|__)?[ \t]*")
_LABEL_AFTER_RE = re.compile(r"(?:\*\*|__)?[ \t]*:")
# What may come before a capitalised word that opens a sentence, a quote or a bracket
_OPENERS = frozenset(".!?:;\"“”'‘’([{-–—*#|>")


def _one_line(text: str, start: int, end: int) -> tuple[int, int]:
    """A name or place ends at its line's end: an NER span stretched over a line break and quote
    marks ("Alberico Rizzo\n>") keeps its first line, without the quote marks and spaces around it.
    A span with words on the next line stays whole (and is judged whole: "Fungi\n2. Bacteria" is a
    list, not a name)."""
    while start < end and text[start] in " \t\n>":
        start += 1
    cut = text.find("\n", start, end)
    if cut >= 0 and not any(c.isalnum() for c in text[cut:end]):
        end = cut  # only quote marks and spaces after the break: the name is the first line
    while end > start and text[end - 1] in " \t>":
        end -= 1
    return start, end


def _same_name_again(text: str, spans: list[Span], allow: set[str] | frozenset[str] = frozenset()) -> list[Span]:
    """A name found once in a text is a name wherever else the same text writes it, word for word
    ("Thaddeus had given Thaddeus his address", "directed by Jindřich Holinka and starring Holinka"):
    every other whole-word occurrence of a PERSON span's text, or of its last word, that no span
    covers yet."""
    people = [s for s in spans if s.entity == "PERSON"]
    if not people:
        return []
    taken = [(s.start, s.end) for s in spans]
    out: list[Span] = []
    for p in people:
        words = text[p.start : p.end].split()
        forms = {" ".join(words)}
        if len(words) > 1 and len(words[-1]) > 2 and words[-1][0].isupper():
            forms.add(words[-1])  # the surname alone
        for form in forms:
            if len(form) < 3 or form.casefold() in allow:
                continue
            for m in re.finditer(rf"(?<![\w'’\-]){re.escape(form)}(?![\w\-])", text):
                if any(a < m.end() and m.start() < b for a, b in taken):
                    continue
                taken.append(m.span())
                out.append(Span(m.start(), m.end(), "PERSON", p.score, p.recognizer))
    return out


def _analyze_chunk(analyzer: Any, texts: Sequence[str], config: PiiConfig) -> list[list[Span]]:
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    nlp = analyzer.nlp_engine
    out: list[list[Span]] = []
    for text, artifacts in nlp.process_batch(texts, language=config.language, batch_size=config.batch_size):
        results = analyzer.analyze(
            text=text,
            language=config.language,
            entities=entities,
            nlp_artifacts=artifacts,
            score_threshold=floor,
            ad_hoc_recognizers=ad_hoc,
        )
        out.append(_to_spans(results, text, config, allow))
    return out


def analyze_one(analyzer: Any, text: str, config: PiiConfig) -> list[Span]:
    """The baseline path: one `analyze()` call for one text, same filtering as `analyze_texts`."""
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    results = analyzer.analyze(
        text=text, language=config.language, entities=entities, score_threshold=floor, ad_hoc_recognizers=ad_hoc
    )
    return drop_titles(text, _to_spans(results, text, config, allow))


# Worker processes inherit the parent's analyzer through fork; they only read it.
_FORK_STATE: dict[str, Any] = {}


def _worker(job: tuple[int, list[str]]) -> tuple[int, list[list[Span]]]:
    i, texts = job
    return i, _analyze_chunk(_FORK_STATE["analyzer"], texts, _FORK_STATE["config"])


def analyze_texts(
    analyzer: Any,
    texts: Sequence[str],
    config: PiiConfig,
    progress: Progress | None = None,
) -> list[list[Span]]:
    """Spans per text, in input order. Identical texts are analysed once; the rest goes through
    spaCy's `nlp.pipe` in batches and, with `n_process > 1`, through forked worker processes."""
    index: dict[str, int] = {}
    unique: list[str] = []
    for t in texts:
        if t not in index:
            index[t] = len(unique)
            unique.append(t)
    todo = [i for i, t in enumerate(unique) if t.strip()]
    results: list[list[Span]] = [[] for _ in unique]
    chunk = max(config.batch_size * 4, 256)
    jobs = [(k, [unique[i] for i in todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    done = 0
    for k, spans in _run_jobs(analyzer, config, jobs):
        for j, s in enumerate(spans):
            results[todo[k + j]] = s
        done += len(spans)
        if progress:
            progress(done, len(todo))
    if config.recurring_person_texts:
        results = drop_recurring_persons(unique, results, config.recurring_person_texts)
        results = drop_common_words(unique, results)
    results = [drop_titles(t, ss) for t, ss in zip(unique, results, strict=True)]
    return [results[index[t]] for t in texts]


def drop_recurring_persons(texts: Sequence[str], spans: Sequence[list[Span]], min_texts: int) -> list[list[Span]]:
    """Corpus-level evidence: a PERSON surface form that the NER or proper-noun recognizers report
    in `min_texts` or more distinct texts is a product, a term or a template word ("Guilty
    Pleasures", "Salesperson", "Kafka Connect"), not a person; those findings are dropped. Names
    after a cue ("my name is", "Thanks Alex,") are kept however often they recur."""
    seen: dict[str, set[int]] = {}
    for i, (t, ss) in enumerate(zip(texts, spans, strict=True)):
        for s in ss:
            if s.entity == "PERSON" and s.recognizer in _CORPUS_CHECKED:
                seen.setdefault(t[s.start : s.end].casefold(), set()).add(i)
    common = {k for k, v in seen.items() if len(v) >= min_texts}
    if not common:
        return list(spans)

    def dropped(t: str, s: Span) -> bool:
        if not (s.entity == "PERSON" and s.recognizer in _CORPUS_CHECKED and t[s.start : s.end].casefold() in common):
            return False
        # The NER's span may have won the overlap against a name cue ("I am Margaret Hollingsworth"):
        # a name after a cue stays however often it recurs (one customer, every turn of a thread).
        return not any(s.start <= a and b <= s.end for a, b in _cue_spans(t))

    return [[s for s in ss if not dropped(t, s)] for t, ss in zip(texts, spans, strict=True)]


_CORPUS_CHECKED = ("SpacyRecognizer", "ProperNounRecognizer")
_LOWER_WORD_RE = re.compile(r"(?<![\w'’\-])[a-z][a-z'’\-]+(?![\w'’\-])")


def drop_common_words(texts: Sequence[str], spans: Sequence[list[Span]], min_texts: int = 2) -> list[list[Span]]:
    """Corpus-level evidence: a proper-noun PERSON finding without a context word whose every word
    the corpus also writes in lowercase, in running text of `min_texts` or more distinct texts that
    have capital letters ("Vegan diets" beside "a vegan diet", "Healthy eating"), is a capitalised
    common word, not a name. All-lowercase texts do not count: names are lowercase there too."""
    candidates = {
        t[s.start : s.end].casefold()
        for t, ss in zip(texts, spans, strict=True)
        for s in ss
        if s.entity == "PERSON" and s.recognizer == "ProperNounRecognizer" and s.score < 0.5
    }
    words = {w for c in candidates for w in c.split()}
    if not words:
        return list(spans)
    seen: dict[str, int] = {}
    for t in texts:
        if not any(c.isupper() for c in t):
            continue
        for w in set(_LOWER_WORD_RE.findall(t)) & words:
            seen[w] = seen.get(w, 0) + 1
    common = {w for w, n in seen.items() if n >= min_texts}

    def dropped(t: str, s: Span) -> bool:
        return (
            s.entity == "PERSON"
            and s.recognizer == "ProperNounRecognizer"
            and s.score < 0.5
            and all(w in common for w in t[s.start : s.end].casefold().split())
        )

    return [[s for s in ss if not dropped(t, s)] for t, ss in zip(texts, spans, strict=True)]


def _run_jobs(
    analyzer: Any, config: PiiConfig, jobs: list[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[list[Span]]]]:
    import multiprocessing as mp

    if config.n_process <= 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        for k, texts in jobs:
            yield k, _analyze_chunk(analyzer, texts, config)
        return
    _FORK_STATE.update(analyzer=analyzer, config=config)
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(min(config.n_process, len(jobs), os.cpu_count() or 1)) as pool:
            yield from pool.imap_unordered(_worker, jobs)
    finally:
        _FORK_STATE.clear()


def detect(
    analyzer: Any,
    conversations: Sequence[Conversation],
    config: PiiConfig,
    progress: Progress | None = None,
) -> list[list[Finding]]:
    """Findings per conversation, for the messages whose role the policy scans."""
    where: list[tuple[int, int, str, str, str]] = []
    for ci, conv in enumerate(conversations):
        for mi, m in enumerate(conv.messages):
            if config.policy(m.role) == "skip":
                continue
            for name, text in message_fields(m):
                where.append((ci, mi, name, text, m.role))
    spans = analyze_texts(analyzer, [w[3] for w in where], config, progress)
    out: list[list[Finding]] = [[] for _ in conversations]
    for (ci, mi, name, text, role), ss in zip(where, spans, strict=True):
        for s in ss:
            out[ci].append(
                Finding(
                    mi, name, s.start, s.end, s.entity, s.score, s.recognizer, sha256_hex(text[s.start : s.end]), role
                )
            )
    return out


def count_scanned(conversations: Sequence[Conversation], config: PiiConfig) -> int:
    return sum(1 for c in conversations for m in c.messages if config.policy(m.role) != "skip")
