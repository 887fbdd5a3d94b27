"""The embedded default data set, :func:`default_names`: the first-name dictionary shipped in the ``gender-guesser``
wheel (``gender_guesser/data/nam_dict.txt``, Jörg Michael, GFDL 1.2). It is read from the installed package at
run time, never copied into this repository.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    from importlib.resources.abc import Traversable
from rnnkit.data.items import LabeledItems, _class_order

DEFAULT_NUM_CATEGORIES = 18
"""How many country-or-region categories :func:`default_names` keeps (those with the most exclusive names)."""

_GENDER_OF_CODE = {"M": "M", "1M": "M", "?M": "M", "F": "F", "1F": "F", "?F": "F", "?": "?"}
_NAME_FIELD = slice(3, 29)  # 0-based character columns of the name (file columns 4-29)
_SORT_MARK_COLUMN = 29  # file column 30: '+' marks a duplicate line sorted by expanded umlauts


@dataclass(frozen=True)
class _NamDict:
    """The parsed dictionary: one record per distinct (joined) name, in file order."""

    categories: tuple[str, ...]  # country-or-region names from the header, in column order
    names: tuple[str, ...]
    columns: tuple[int, ...]  # per name: bit j set <=> a frequency in category column j, over all its lines
    genders: tuple[frozenset[str], ...]  # per name: {"M", "F", "?"} from its lines' gender codes


def _nam_dict_resource() -> Traversable:
    try:
        res = importlib.resources.files("gender_guesser") / "data" / "nam_dict.txt"
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "the embedded default needs the gender-guesser package: pip install gender-guesser"
        ) from None
    if not res.is_file():
        raise FileNotFoundError(f"gender-guesser is installed but {res} is missing; reinstall it")
    return res


def nam_dict_path() -> str:
    """Where the installed ``gender-guesser`` package keeps ``nam_dict.txt`` (for messages and provenance)."""
    return str(_nam_dict_resource())


def join_compound(name: str) -> str:
    """Join a ``+``-compound into one name: ``"Ai+Bin" -> "Aibin"``, ``"Abdel+Aziz" -> "Abdelaziz"``.

    ``+`` stands for ``-``, a space or nothing in the dictionary; joining with nothing and lower-casing each
    following part gives the capitalisation of a normal name, so no character gives the compound away.
    """
    first, *rest = name.split("+")
    return first + "".join(part.lower() for part in rest)


def _header_categories(header: list[str]) -> list[tuple[str, int]]:
    """``(category, 0-based column)`` from the header's country list: a name line, then ``|`` under it."""
    out = []
    for i, line in enumerate(header):
        body = line.rstrip("$ ")
        if body.strip("# ") == "|" and i > 0:
            name = header[i - 1].strip("#$ \t")
            out.append((name, body.index("|")))
    return out


@functools.lru_cache(maxsize=1)
def _parse_nam_dict() -> _NamDict:
    res = _nam_dict_resource()
    path = str(res)
    raw = res.read_bytes()  # read through importlib.resources: works for zipped installs too
    head = raw[:20000].decode("latin-1")
    m = re.search(r"char set\s*=\s*([\w-]+)", head)
    charset = m.group(1) if m else "utf-8"
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot decode as its declared char set {charset!r}: {e}") from None
    lines = text.splitlines()
    header = [line for line in lines if line.startswith("#")]
    cats = _header_categories(header)
    if len(cats) < 2 or [c for _, c in cats] != list(range(cats[0][1], cats[0][1] + len(cats))):
        raise ValueError(f"{path}: unexpected header: cannot find the country columns")
    first_col = cats[0][1]
    categories = tuple(name for name, _ in cats)
    columns: dict[str, int] = defaultdict(int)
    # Frequencies -> a bit mask in one C-level pass per line (blank = 0, a hex digit = 1), reversed so that
    # category j is bit j.
    to_bits = str.maketrans({c: "1" for c in "0123456789ABCDEFabcdef"} | {" ": "0"})
    genders: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        if not line or line[0] in "#=" or len(line) < first_col + len(cats):
            continue  # comments, "=" equivalence lines (short and long form of one name), blank lines
        if line[_SORT_MARK_COLUMN] == "+":
            # The header: "ignore all lines containing a '+' in column 30" (duplicate umlaut spellings).
            continue
        code = line[:3].strip()
        if code not in _GENDER_OF_CODE:
            raise ValueError(f"{path}: unknown gender code {code!r} in line {line.strip()!r}")
        name = join_compound(line[_NAME_FIELD].strip())
        freq = line[first_col : first_col + len(cats)]
        try:
            columns[name] |= int(freq.translate(to_bits)[::-1], 2)
        except ValueError:
            raise ValueError(f"{path}: unexpected frequency field in line {line.strip()!r}") from None
        genders[name].add(_GENDER_OF_CODE[code])
    names = tuple(columns)
    return _NamDict(
        categories=categories,
        names=names,
        columns=tuple(columns[n] for n in names),
        genders=tuple(frozenset(genders[n]) for n in names),
    )


def default_names(
    task: Literal["country", "gender"] = "country", num_categories: int = DEFAULT_NUM_CATEGORIES
) -> LabeledItems:
    """The embedded default dataset: first names from ``gender-guesser``'s ``nam_dict.txt`` with a label.

    The file (≈48k lines) lists a name, a gender code and a frequency (1-13) in each of 55 country-or-region
    columns (its header names them: ``Great Britain``, ..., ``East Frisia``, ..., ``Arabia/Persia``,
    ``China``, ...). Parsing follows the header: lines with ``+`` in column 30 (duplicate spellings of umlaut
    names) and ``=`` equivalence lines are skipped; ``+``-compounds are joined (:func:`join_compound`); all
    lines of one name are merged.

    Args:
        task: ``"country"``: a name → the one country or region it occurs in. Names with frequencies in two
            or more columns (``other countries`` included) are left out; of the categories, the
            ``num_categories`` with the most such names are kept (``other countries`` is never a category).
            ``"gender"``: a name → ``"M"`` or ``"F"``. Codes ``M``, ``1M``, ``?M`` (mostly male) count as M,
            the ``F`` ones as F; a name with a ``?`` (unisex) line, or with both male and female lines, is
            left out.
        num_categories: how many country-or-region categories to keep (``task="country"`` only).

    Returns:
        A fresh :class:`LabeledItems` (items in the file's order, classes sorted); parsing is cached.
    """
    if task not in ("country", "gender"):
        raise ValueError(f"task must be 'country' or 'gender', got {task!r}")
    nd = _parse_nam_dict()
    source = f"gender-guesser nam_dict.txt ({task})"
    items: list[str] = []
    labels: list[str] = []
    if task == "gender":
        for name, g in zip(nd.names, nd.genders, strict=True):
            if g in ({"M"}, {"F"}):
                items.append(name)
                labels.append(next(iter(g)))
        return LabeledItems(items, labels, ["F", "M"], source=source)
    if not isinstance(num_categories, int) or not 2 <= num_categories <= len(nd.categories) - 1:
        raise ValueError(f"num_categories must be an integer in [2, {len(nd.categories) - 1}], got {num_categories!r}")
    # Exactly one bit set <=> the name occurs in exactly one column.
    exclusive = [
        (name, mask.bit_length() - 1)
        for name, mask in zip(nd.names, nd.columns, strict=True)
        if mask and not mask & (mask - 1)
    ]
    counts = Counter(col for _, col in exclusive if nd.categories[col] != "other countries")
    keep = {col for col, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_categories]}
    for name, col in exclusive:
        if col in keep:
            items.append(name)
            labels.append(nd.categories[col])
    return LabeledItems(items, labels, _class_order(labels), source=source)
