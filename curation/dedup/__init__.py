"""Dedup: exact and MinHash near-duplicate clusters, a keeper per cluster, train/eval contamination.

The stage is a chain of explicit sub-steps, each a pure function that can be tested alone:

    text_view        what of a conversation is compared (all turns, or user turns only)
    normalise        Unicode NFKC, case folding, whitespace collapsed to single spaces
    segment          a row written mostly in a script without word boundaries (Chinese, Japanese,
                     Thai, Lao, Khmer, Myanmar) has those characters split apart, so its n-grams
                     are character n-grams (decided per row; `char_scripts` in the run's params)
    shingles         the set of word n-grams (a text shorter than n words is one shingle)
    MinHasher        MinHash signatures, batch-wise in numpy
    band_hashes      LSH: one 64-bit hash per band of `rows` signature values
    candidate_pairs  group-by on (band, band hash): conversations sharing a bucket
    verify_pairs     estimated Jaccard of each candidate pair from the signatures
    union_find       connected components of the duplicate pairs (exact copies included)
    choose_keepers   one conversation per cluster is kept; the others are flagged `near_duplicate`

`find_duplicates` runs the steps after the signatures; `dedup` runs all of them over a list of
conversations. `contamination(train, eval, config)` checks an eval set against a train set with the
same signatures, for the freeze step.

Signatures are bit-identical to datasketch's `MinHash(num_perm, seed)` (its default "affine32"
scheme) updated with the UTF-8 bytes of every shingle: the same `sha1_hash32` of each shingle, the
same MurmurHash3 pre-mix and the same permutations (taken from datasketch itself). They are
computed differently: a batch's words are mapped to integer ids once, each n-gram gets a 128-bit
key from its ids in numpy, sha1 runs once per distinct n-gram (chat data repeats system prompts,
greetings and templates, so most n-grams recur), and the permutations are applied column by column
over a whole batch with `np.minimum.reduceat`. The 128-bit n-gram key only decides which n-grams
share a hash; two different n-grams with the same 128-bit key would be the only way to differ from
datasketch, and any 64-bit collision that is seen sends the batch down the plain string path.

The LSH bands and rows come from datasketch's own optimal-parameter function for the threshold,
with weights that favour recall (pairs are verified afterwards, so a false candidate costs only a
comparison of two signatures).

Modules, in the order of the chain: `config` (DedupConfig, reason codes, LSH parameters), `text`
(text view, normalise, segment, shingles; `word_diff` for the review's side-by-side view),
`minhash` (MinHasher, Features, the forked `features_all`), `lsh` (bands, candidate pairs,
verification, exact pairs, union-find), `keepers` (clusters, the keeper choice, `find_duplicates`,
`dedup`) and `leakage` (`contamination`: eval rows near a train row; clusters straddling splits). Import
every name from `curation.dedup`.
"""

from curation.dedup.config import (
    EMPTY_HASH,
    KEEPER_CRITERIA,
    REASON,
    SCHEME,
    SEVERITY,
    SIGNATURE_VERSION,
    STAGE,
    VIEWS,
    DedupConfig,
    DedupError,
    config_help,
    lsh_params,
)
from curation.dedup.keepers import (
    Cluster,
    DedupResult,
    Item,
    Member,
    Pair,
    choose_keeper,
    cluster_flags,
    dedup,
    find_duplicates,
)
from curation.dedup.keepers import _clusters as _clusters  # tests build clusters directly
from curation.dedup.leakage import (
    ContaminationPair,
    contamination,
    contamination_from_features,
    straddling_clusters,
)
from curation.dedup.lsh import band_hashes, candidate_pairs, exact_pairs, union_find, verify_pairs
from curation.dedup.minhash import (
    Features,
    MinHasher,
    features,
    features_all,
    signature_bytes,
    signatures_from_bytes,
    worker_count,
)
from curation.dedup.text import (
    UNSPACED_SHARE,
    answer_chars,
    norm_hash,
    normalise,
    normalise_many,
    segment,
    sha1_hash32,
    shingles,
    text_view,
    text_view_dict,
    word_diff,
)

__all__ = [
    "EMPTY_HASH",
    "KEEPER_CRITERIA",
    "REASON",
    "SCHEME",
    "SEVERITY",
    "SIGNATURE_VERSION",
    "STAGE",
    "UNSPACED_SHARE",
    "VIEWS",
    "Cluster",
    "ContaminationPair",
    "DedupConfig",
    "DedupError",
    "DedupResult",
    "Features",
    "Item",
    "Member",
    "MinHasher",
    "Pair",
    "answer_chars",
    "band_hashes",
    "candidate_pairs",
    "choose_keeper",
    "cluster_flags",
    "config_help",
    "contamination",
    "contamination_from_features",
    "dedup",
    "exact_pairs",
    "features",
    "features_all",
    "find_duplicates",
    "lsh_params",
    "norm_hash",
    "normalise",
    "normalise_many",
    "segment",
    "sha1_hash32",
    "shingles",
    "signature_bytes",
    "signatures_from_bytes",
    "straddling_clusters",
    "text_view",
    "text_view_dict",
    "union_find",
    "verify_pairs",
    "word_diff",
    "worker_count",
]
