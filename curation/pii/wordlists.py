"""Word lists the recognizers use, kept as data files (`data/*.txt`, one lowercase entry a line, `#`
comments) so that they can be maintained without touching code."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def load(name: str) -> frozenset[str]:
    """The entries of `data/<name>.txt`: stripped, lowercased, without blank lines and comments."""
    out = set()
    for line in (DATA / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        w = line.split("#", 1)[0].strip().casefold()
        if w:
            out.add(w)
    return frozenset(out)


NOT_NAMES = load("not_names")
ORG_WORDS = load("org_words")
CUE_STOP = load("cue_stop")
TRAVEL_VERBS = load("travel_verbs")
NAME_PARTICLES = load("name_particles")
PLACE_PREPS = load("place_preps")
PLACE_PHRASES = load("place_phrases")
PERSON_VERBS = load("person_verbs")
NUMBERED_WORDS = load("numbered_words")
NOT_PLACES = load("not_places")
KIN_WORDS = load("kin_words")
TECH_TERMS = load("tech_terms")
PRODUCT_WORDS = load("product_words")
NATO = load("nato")
FILE_EXTENSIONS = load("file_extensions")
COUNTRIES = load("countries")
PERSON_NOUNS = load("person_nouns")
