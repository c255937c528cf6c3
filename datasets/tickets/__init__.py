"""Seeded synthetic data for one narrow, measurable task: QuillDB ticket triage.

Sample and demo data, not part of the product: it lives beside the sample set it writes
(``datasets/``, which has no ``__init__.py`` so that it never shadows the Hugging Face
``datasets`` library). Tests, benchmarks and scripts import it as ``tickets`` with ``datasets/``
on ``sys.path`` (``tests/conftest.py``, ``bench/__init__.py``, ``scripts/*.py``).

QuillDB is a fictional distributed SQL database with a cloud console. A user
writes a support ticket; the assistant answers with a short helpful reply and
then a final line of compact JSON with exactly the keys ``category``,
``priority`` and ``product_area``.

Labels are a deterministic function of the ticket text: the problem sentence
(one template per category and product area) fixes ``category`` and
``product_area``, and a severity cue ("Production is down", "No rush at all",
...) fixes ``priority``. A fine-tuned model can therefore be scored by exact
match and per-field accuracy.

Besides clean data (``clean``), the package produces a noisy training pool with known,
configurable problems (``noise``: duplicates, near duplicates, wrong labels, planted fake
PII, broken turn structure, over-long rows, eval leakage; ``realistic``: systematic label
noise and templated answers) and the small bundled sample set under ``datasets/sample``
(``sample_set``). Every planted problem is recorded in a ground-truth dict so curation tools
can be scored for precision and recall. ``vocab`` and ``phrases`` hold the text it is made of.

All randomness comes from ``random.Random`` instances seeded by the caller;
there is no module-level mutable state.
"""

from curation.formats import DIALECTS

from .clean import (
    assistant_text,
    generate_clean,
    generate_conversations,
    labels_json,
    lookup_cluster_tool,
    parse_labels,
    ticket_row,
)
from .noise import (
    BROKEN_SUBKINDS,
    DEFAULT_RATES,
    NEAR_DUP_MIN_JACCARD,
    NOISE_KINDS,
    OVERLONG_MIN_CHARS,
    generate_noisy,
    word_shingle_jaccard,
)
from .realistic import REALISTIC_DEFAULTS, REALISTIC_KINDS, TEMPLATED_REPLY, add_realistic_noise
from .sample_set import write_sample_set
from .vocab import ALPACA_INSTRUCTION, CATEGORIES, LABEL_KEYS, PRIORITIES, PRODUCT_AREAS, SYSTEM_PROMPT

__all__ = [
    "ALPACA_INSTRUCTION",
    "BROKEN_SUBKINDS",
    "CATEGORIES",
    "DEFAULT_RATES",
    "DIALECTS",
    "LABEL_KEYS",
    "NEAR_DUP_MIN_JACCARD",
    "NOISE_KINDS",
    "OVERLONG_MIN_CHARS",
    "PRIORITIES",
    "PRODUCT_AREAS",
    "REALISTIC_DEFAULTS",
    "REALISTIC_KINDS",
    "SYSTEM_PROMPT",
    "TEMPLATED_REPLY",
    "add_realistic_noise",
    "assistant_text",
    "generate_clean",
    "generate_conversations",
    "generate_noisy",
    "labels_json",
    "lookup_cluster_tool",
    "parse_labels",
    "ticket_row",
    "word_shingle_jaccard",
    "write_sample_set",
]
