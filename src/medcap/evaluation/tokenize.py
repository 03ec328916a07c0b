"""Caption tokenisation as the COCO caption evaluation does it, in pure Python.

pycocoevalcap runs Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase` (Java)
and then drops a fixed list of punctuation tokens. `ptb_tokenize` reproduces that output
for the text captions are made of (words, numbers and units, hyphenated and slashed terms,
contractions, quotes, brackets, dashes, the usual abbreviations), without Java. Notable
behaviours kept on purpose because the reference scores depend on them:

- brackets become `-lrb-`, `-rrb-`, `-lsb-`, ... and are *not* removed (COCO's removal
  list spells them in upper case, and the tokens are lower-cased first);
- a period stays on known abbreviations (`etc.`, `fig. 2`, `e.g.`, single letters) and on
  any word directly followed by `,` `;` or `:` (`lobe.,` gives `lobe.`);
- `2.5cm` splits into `2.5 cm` while `2cm` stays one token; contractions split (`does n't`).

Rare constructs (runs of digit-only slashed numbers, URLs inside parentheses, exotic
Unicode symbols) may still differ from the Java tokenizer; the tests compare the two on a
corpus of radiology-style captions.

ImageCLEFmedical preprocessing (`imageclef_preprocess`) is a separate, simpler step.
"""

from __future__ import annotations

import re
import string

# Tokens COCO removes after tokenising (the effective list: its bracket names never match).
_REMOVED = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})

# Characters that count as word characters for Python's `re` but are not letters or
# decimal digits for Java (superscripts, fractions, enclosed numbers).
_NOT_ALNUM = "\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff\u2776-\u2793"
_A = rf"[^\W_{_NOT_ALNUM}]"  # a letter or a decimal digit
_L = rf"[^\W\d_{_NOT_ALNUM}]"  # a letter
_HYPHEN = "[-_\u2010\u2011]"
_APOS = "['\u2019]"

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("url", r"(?:https?|ftp)://[^\s\"<>()\[\]{}]+|www\.[^\s\"<>()\[\]{}]+"),
        ("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
        ("handle", r"@\w+"),
        ("hashtag", rf"#{_L}+"),
        ("acronym", r"[A-Za-z](?:\.[A-Za-z])*\.|(?i:ph|ed)\.[Dd]\."),
        ("abbrev", r"[A-Za-z]+\."),
        ("abbrev_num", r"(?i:ca|figs?|prop|nos?|art|pp|op)\.(?= ?\d)"),
        ("caps_amp", r"[A-Z]+(?:[+&][A-Z]+)+"),
        ("word", rf"{_A}*{_L}{_A}*(?:[.!?]{_L}{_A}*)*"),
        ("thing", rf"(?:\d+(?:[.,]\d+)+|{_A}+)(?:{_HYPHEN}{_A}+)*"),
        ("slashed", rf"{_A}+(?:[-\u2010\u2011]{_A}+)*(?:/{_A}+(?:[-\u2010\u2011]{_A}+)*)+"),
        ("number", r"[-+]?(?:\d*(?:[.:,]\d+)+|\d+)"),
        ("fraction", r"\d{1,4}[- \u00a0]\d{1,4}/\d{1,4}"),
        ("apos_word", rf"[lLdDoO]{_APOS}{_L}{_A}*|[lLdD]{_APOS}(?=\s)"),
        ("decade", rf"{_APOS}\d\ds(?!\w)|{_APOS}\d\d(?=\s|$)"),
        ("quotes", r"''|``"),
        ("dots", r"(?:\.{3,}|\u2026)"),
        ("dashes", r"-{2,}|[\u2013\u2014\u2015]+"),
        ("smiley", r"[:;]-?[()]"),
        ("repeat", r"[?!]{2,}|\*{2,}|_{2,}|<<|>>"),
        ("superscript", r"[\u00b2\u00b3\u00b9\u2070-\u207f]{2,}"),
        ("apos_t", r"'t(?=(?:is|was)\b)"),
    )
)

# Abbreviations that keep their period (matched case-insensitively) ...
_ABBREVIATIONS = frozenset(
    """jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri
    ala ariz calif colo conn ct dak fla ga ind kan kans ky md mich minn mo mont neb nev okla
    penn tenn va vt wis wisc wyo mr mrs ms dr drs prof profs sen sens rep reps atty attys lt
    col gen messrs gov govs adm rev maj sgt cpl pvt capt st ste ave pres lieut hon brig cmdr
    comdr pfc spc supt supts det mme mlle inc co cos corp ltd plc bancorp dept bhd assn univ
    intl sys invt elec natl tel est ext sq jr sr bros blvd rd esq etc al seq bldg vs alex wm
    jos cie cf treas""".split()  # noqa: SIM905 - a word list reads better as text
)
# ... only when capitalised (the lexer spells their first letter in upper case) ...
_CAPITALISED_ABBREVIATIONS = frozenset("az ark del ill la mass miss ore pa tex wash".split())  # noqa: SIM905
# ... or only with a lower-case tail (`Pty.` but not `PTY.`).
_LOWER_TAIL_ABBREVIATIONS = re.compile(r"[Pp]p?t[ye]s?|[Mm][ft]g")

_SPLIT_WORDS = {
    "cannot": 3,
    "gonna": 3,
    "gotta": 3,
    "wanna": 3,
    "lemme": 3,
    "gimme": 3,
}
_CONTRACTION = re.compile(rf"{_APOS}(?:s|re|ve|ll|d|m)(?![^\W\d_])", re.IGNORECASE)
_NEGATION = re.compile(rf"[nN]{_APOS}[tT](?![^\W\d_])")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_WORDLIKE = frozenset({"word", "thing", "number", "slashed", "hashtag"})
_NORMALISED = {"dots": "...", "dashes": "--", "apos_t": "'t"}
_CHAR_MAP = {"\u20ac": "$", "\u00a3": "#"}  # the lexer rewrites euro and pound signs
_QUOTES = frozenset("\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb")
_ENTITIES = (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'))
_SPACE = re.compile(r"[\s\u200b\u00a0\ufeff]+")


_HAS_LETTER = re.compile(_L)
# digit-only slashed runs join at most three numbers and take no hyphens
_DIGIT_SLASHES = re.compile(r"\d+(?:/\d+){0,2}")


def _is_abbreviation(text: str) -> bool:
    stem = text[:-1]
    low = stem.lower()
    if low in _ABBREVIATIONS:
        return True
    if low in _CAPITALISED_ABBREVIATIONS:
        return stem[0].isupper()
    return _LOWER_TAIL_ABBREVIATIONS.fullmatch(stem) is not None


def _takes_period(name: str, token: str) -> bool:
    """Whether a following period stays attached (words and integers, not decimals)."""
    if name == "thing":
        return "." not in token and "," not in token
    return name in {"word", "apos_word"}


def _longest_match(text: str, pos: int) -> tuple[str, str] | None:
    best: tuple[str, str] | None = None
    for name, pattern in _RULES:
        match = pattern.match(text, pos)
        if not match or not match.group():
            continue
        token = match.group()
        if name == "abbrev" and not _is_abbreviation(token):
            continue
        if name == "slashed" and not _HAS_LETTER.search(token):
            token = _DIGIT_SLASHES.match(token).group()  # type: ignore[union-attr]
        if best is None or len(token) > len(best[1]):
            best = (name, token)
    return best


def _ptb_tokens(text: str) -> list[str]:
    """PTB tokens of one caption, lower-cased, before punctuation removal."""
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    tokens: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
            continue
        found = _longest_match(text, pos)
        if found is None:
            char = text[pos]
            tokens.append(_BRACKETS.get(char) or _CHAR_MAP.get(char, char))
            pos += 1
            continue
        name, token = found
        pos += len(token)
        if name in _WORDLIKE:
            low = token.lower()
            if low in _SPLIT_WORDS:
                cut = _SPLIT_WORDS[low]
                tokens += [token[:cut], token[cut:]]
                continue
            negation = _NEGATION.match(text, pos - 1) if name != "hashtag" else None
            if negation:
                tokens += [token[:-1], "n't"] if len(token) > 1 else ["n't"]
                pos = negation.end()
                continue
            contraction = _CONTRACTION.match(text, pos)
            if contraction:
                tokens += [token, "'" + contraction.group()[1:]]
                pos = contraction.end()
                continue
        if _takes_period(name, token) and text[pos : pos + 2] in {".,", ".;", ".:"}:
            token += "."  # a period before sentence-internal punctuation stays attached
            pos += 1
        if name == "smiley":
            token = token[:-1] + _BRACKETS[token[-1]]
        elif name == "fraction":
            token = token.replace(" ", "\u00a0")  # the lexer joins mixed fractions with NBSP
        tokens.append(_NORMALISED.get(name, token))
    return [token.lower() for token in tokens]


def ptb_tokenize(text: str) -> str:
    """COCO-style tokens of one caption joined by single spaces (punctuation removed).

    >>> ptb_tokenize("Axial CT (arrow) shows a 2.5cm nodule, doesn't it?")
    'axial ct -lrb- arrow -rrb- shows a 2.5 cm nodule does n't it'
    """
    tokens = _ptb_tokens(text.replace("\n", " "))
    return " ".join(token for token in tokens if token not in _REMOVED and not _is_quote(token))


def _is_quote(token: str) -> bool:
    return len(token) == 1 and token in _QUOTES


_DIGITS = re.compile(r"\d+")
_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)


def imageclef_preprocess(text: str) -> str:
    """ImageCLEFmedical caption preprocessing: lower-case, digit runs -> `number`,
    ASCII punctuation removed (FACTS.md, 2023 evaluator)."""
    text = _DIGITS.sub("number", text.lower())
    return " ".join(text.translate(_PUNCTUATION_TABLE).split())
