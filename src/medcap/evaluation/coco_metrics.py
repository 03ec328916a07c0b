"""BLEU-1..4, ROUGE-L and CIDEr-D with the COCO caption evaluation's definitions.

Inputs are already tokenised captions (see `tokenize.ptb_tokenize`): one candidate and
one or more references per item. The definitions follow pycocoevalcap 1.2 exactly, so the
numbers are comparable with published COCO-style results:

- BLEU is corpus-level: clipped n-gram matches and candidate n-gram counts are summed over
  all items before the precisions are taken; the brevity penalty uses, per item, the
  reference length closest to the candidate's (the shorter one on a tie), summed over the
  corpus. Smoothing constants 1e-15 (numerator) and 1e-9 (denominator) as in COCO.
- ROUGE-L: per item, the longest common subsequence against each reference; the best
  precision and the best recall (possibly from different references) combine into
  F = (1 + b^2) P R / (R + b^2 P) with b = 1.2; the corpus score is the mean.
- CIDEr-D: TF-IDF n-gram vectors (n = 1..4) with document frequencies counted over the
  references of all items, idf = log(#items) - log(max(1, df)); per reference, a clipped
  cosine (min(candidate, reference) weights) times a Gaussian length penalty with sigma 6,
  where, as in COCO's code, the "length" is the number of bigrams; averaged over n and
  references, times 10; the corpus score is the mean over items.

Optional item `weights` (default 1 each) let several items share one image's place: BLEU
sums weighted counts, CIDEr-D counts document frequencies and #items with the weights.
Weights of 1/m for the m rows of an image make every image count once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

_TINY = 1e-15  # COCO BLEU: keeps a zero match count from giving log(0)
_SMALL = 1e-9  # COCO BLEU: keeps an empty candidate from dividing by zero
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0
CIDER_SCALE = 10.0

Gram = tuple[str, ...]


def _ngrams(tokens: Sequence[str], n_max: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


def _check(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every candidate needs at least one reference")


def weighted_mean(scores: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Mean of per-item scores, each counted with its weight (plain mean without weights)."""
    if weights is None:
        return sum(scores) / len(scores) if scores else 0.0
    total = sum(weights)
    return sum(s * w for s, w in zip(scores, weights, strict=True)) / total if total else 0.0


def bleu(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    n_max: int = 4,
    weights: Sequence[float] | None = None,
) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n_max and per-item BLEU-1..n_max (lists indexed by n - 1)."""
    _check(candidates, references)
    total_correct: list[float] = [0] * n_max
    total_guess: list[float] = [0] * n_max
    total_test: float = 0
    total_ref: float = 0
    per_item: list[list[float]] = [[] for _ in range(n_max)]
    for i, (cand, refs) in enumerate(zip(candidates, references, strict=True)):
        weight = 1 if weights is None else weights[i]
        words = cand.split()
        test_len = len(words)
        counts = _ngrams(words, n_max)
        max_ref: Counter[tuple[str, ...]] = Counter()
        ref_lens = []
        for ref in refs:
            ref_words = ref.split()
            ref_lens.append(len(ref_words))
            for gram, count in _ngrams(ref_words, n_max).items():
                max_ref[gram] = max(max_ref[gram], count)
        ref_len = min((abs(length - test_len), length) for length in ref_lens)[1]
        correct = [0] * n_max
        for gram, count in counts.items():
            correct[len(gram) - 1] += min(count, max_ref[gram])
        guess = [max(0, test_len - k) for k in range(n_max)]
        for k in range(n_max):
            total_correct[k] += weight * correct[k]
            total_guess[k] += weight * guess[k]
        total_test += weight * test_len
        total_ref += weight * ref_len
        for k, score in enumerate(_bleu_from_counts(correct, guess, test_len, ref_len)):
            per_item[k].append(score)
    corpus = _bleu_from_counts(total_correct, total_guess, total_test, total_ref)
    return corpus, per_item


def _bleu_from_counts(
    correct: Sequence[float], guess: Sequence[float], test_len: float, ref_len: float
) -> list[float]:
    scores = []
    product = 1.0
    for k in range(len(correct)):
        product *= (correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [score * penalty for score in scores]
    return scores


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(
    candidates: Sequence[str], references: Sequence[Sequence[str]], beta: float = ROUGE_BETA
) -> tuple[float, list[float]]:
    """Mean ROUGE-L F-score (beta 1.2) and per-item scores."""
    _check(candidates, references)
    scores = []
    for cand, refs in zip(candidates, references, strict=True):
        cand_tokens = cand.split(" ")  # COCO splits on single spaces
        best_p = best_r = 0.0
        for ref in refs:
            ref_tokens = ref.split(" ")
            lcs = lcs_length(ref_tokens, cand_tokens)
            best_p = max(best_p, lcs / len(cand_tokens))
            best_r = max(best_r, lcs / len(ref_tokens))
        if best_p and best_r:
            scores.append((1 + beta**2) * best_p * best_r / (best_r + beta**2 * best_p))
        else:
            scores.append(0.0)
    return (sum(scores) / len(scores) if scores else 0.0), scores


CiderVector = tuple[list[dict[Gram, float]], list[float], int]  # per-n weights, norms, bigrams


def cider_vector(
    counts: Counter[Gram], doc_freq: Mapping[Gram, float], log_docs: float, n_max: int = 4
) -> CiderVector:
    """TF-IDF weights per n-gram order, their norms, and COCO's "length" (the bigram count).

    idf = log_docs - log(max(1, df)): `log_docs` is log of the number of documents that
    `doc_freq` was counted over.
    """
    vec: list[dict[Gram, float]] = [{} for _ in range(n_max)]
    norms = [0.0] * n_max
    bigrams = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        weight = tf * (log_docs - math.log(max(1.0, doc_freq.get(gram, 0.0))))
        vec[n][gram] = weight
        norms[n] += weight * weight
        if n == 1:  # COCO's "length" counts bigrams, not words
            bigrams += tf
    return vec, [math.sqrt(x) for x in norms], bigrams


def cider_similarity(
    candidate: CiderVector, reference: CiderVector, sigma: float = CIDER_SIGMA
) -> list[float]:
    """CIDEr-D of one candidate against one reference, per n-gram order (before the mean
    over orders and the x10): clipped cosine times the Gaussian length penalty."""
    vec_c, norm_c, len_c = candidate
    vec_r, norm_r, len_r = reference
    penalty = math.exp(-((len_c - len_r) ** 2) / (2 * sigma**2))
    out = []
    for n in range(len(vec_c)):
        # CIDEr-D clips candidate weights at the reference's: repeating words gains nothing.
        value = sum(
            min(weight, vec_r[n].get(gram, 0.0)) * vec_r[n].get(gram, 0.0)
            for gram, weight in vec_c[n].items()
        )
        if norm_c[n] and norm_r[n]:
            value /= norm_c[n] * norm_r[n]
        out.append(value * penalty)
    return out


def ngram_counts(tokens: Sequence[str], n_max: int = 4) -> Counter[Gram]:
    """Counts of every 1..n_max-gram of a token list."""
    return _ngrams(tokens, n_max)


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    n_max: int = 4,
    sigma: float = CIDER_SIGMA,
    weights: Sequence[float] | None = None,
) -> tuple[float, list[float]]:
    """Mean CIDEr-D (x10) and per-item scores; idf comes from these references only."""
    _check(candidates, references)
    ref_counts = [[_ngrams(ref.split(), n_max) for ref in refs] for refs in references]
    item_weights = [1.0] * len(candidates) if weights is None else list(weights)
    doc_freq: dict[Gram, float] = {}  # each item's references count with the item's weight
    for counts, item_weight in zip(ref_counts, item_weights, strict=True):
        for gram in {gram for ref in counts for gram in ref}:
            doc_freq[gram] = doc_freq.get(gram, 0.0) + item_weight
    log_items = math.log(sum(item_weights)) if candidates else 0.0
    scores = []
    for cand, counts in zip(candidates, ref_counts, strict=True):
        cand_vec = cider_vector(_ngrams(cand.split(), n_max), doc_freq, log_items, n_max)
        total = [0.0] * n_max
        for ref in counts:
            per_n = cider_similarity(cand_vec, cider_vector(ref, doc_freq, log_items, n_max), sigma)
            for n in range(n_max):
                total[n] += per_n[n]
        scores.append(sum(total) / n_max / len(counts) * CIDER_SCALE)
    return weighted_mean(scores, weights), scores
