"""Text items and their labels: readers for the layouts people have, the embedded default, and splits.

Layouts (:func:`load_data` picks one by what the path is):

- a folder of ``<Category>.txt`` files, one item per line (the PyTorch char-RNN tutorials' ``data/names/``):
  :func:`read_folder`;
- one text file, one item per line (makemore's ``names.txt``), unlabeled: :func:`read_lines`;
- a CSV (or TSV) with a text column and a label column: :func:`read_csv`.

The embedded default, :func:`default_names`, is the first-name dictionary shipped in the ``gender-guesser``
wheel (``gender_guesser/data/nam_dict.txt``, Jörg Michael, GFDL 1.2). It is read from the installed package at
run time, never copied into this repository.

Splits (:func:`split_items`) are deterministic, stratified and by distinct item: the same string never lands
in two splits, even when it carries two labels.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.resources
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    from importlib.resources.abc import Traversable


def _class_order(names: Iterable[str]) -> list[str]:
    """Classes sorted case-insensitively (``"the Netherlands"`` between ``"Spain"`` and ``"Turkey"``)."""
    return sorted(set(names), key=lambda s: (s.casefold(), s))


@dataclass
class LabeledItems:
    """Items (strings) with optional labels: what every reader returns and every split holds.

    Attributes:
        items: the items, e.g. names; ``N`` of them.
        labels: ``N`` class names, or ``None`` for unlabeled data (generation).
        classes: every class name, in class-id order; defaults to the sorted distinct labels. Splits of one
            dataset share the same ``classes``, so class ids agree between them.
        source: where the data came from (a path or a description), used in messages.
    """

    items: list[str]
    labels: list[str] | None = None
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.items = list(self.items)
        for i, s in enumerate(self.items):
            if not isinstance(s, str):
                raise TypeError(f"item {i} of {self._where()} is {type(s).__name__}, expected str: {s!r}")
        if self.labels is not None:
            self.labels = [str(lab) for lab in self.labels]
            if len(self.labels) != len(self.items):
                raise ValueError(
                    f"{self._where()}: {len(self.items)} items but {len(self.labels)} labels; they must pair up"
                )
            if not self.classes:
                self.classes = _class_order(self.labels)
        self.classes = list(self.classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{self._where()}: duplicate class names in {self.classes!r}")
        if self.labels is not None:
            unknown = set(self.labels) - set(self.classes)
            if unknown:
                raise ValueError(f"{self._where()}: labels {sorted(unknown)!r} are not in classes {self.classes!r}")

    def _where(self) -> str:
        return self.source or "the data"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def is_labeled(self) -> bool:
        """Whether the items carry labels."""
        return self.labels is not None

    def label_ids(self) -> list[int]:
        """Class ids ``(N,)``: the index of each label in :attr:`classes`."""
        if self.labels is None:
            raise ValueError(f"{self._where()} has no labels")
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[lab] for lab in self.labels]

    def counts(self) -> dict[str, int]:
        """Items per class, in class order (``{}`` for unlabeled data)."""
        if self.labels is None:
            return {}
        c = Counter(self.labels)
        return {k: c[k] for k in self.classes}

    def subset(self, indices: Iterable[int]) -> LabeledItems:
        """The items at ``indices`` (same classes and source)."""
        idx = list(indices)
        return LabeledItems(
            items=[self.items[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            classes=list(self.classes),
            source=self.source,
        )

    def require_classes(self, min_classes: int = 2) -> None:
        """Raise ``ValueError`` unless the data is labeled with at least ``min_classes`` classes that occur.

        A classifier needs at least two classes; readers accept a folder with one ``<Category>.txt`` (it is
        valid input for generation), so the caller that trains a classifier checks it here.
        """
        if self.labels is None:
            raise ValueError(
                f"{self._where()} has no labels; a classifier needs labeled data: a folder of <Category>.txt "
                "files or a CSV with a label column"
            )
        present = _class_order(self.labels)
        if len(present) < min_classes:
            shown = ", ".join(repr(c) for c in present) or "none"
            raise ValueError(
                f"{self._where()} has {len(present)} class{'es' if len(present) != 1 else ''} ({shown}); "
                f"a classifier needs at least {min_classes}: add more categories"
            )


# ----------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------


def _existing(path: str | Path, what: str = "path") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such {what}: {str(path)!r}; check the spelling, or give the full path")
    return p


def _read_text(path: Path) -> str:
    """Read a UTF-8 text file (a leading byte-order mark is dropped); other encodings raise ``ValueError``.

    A folder, a device or a pipe (``/dev/zero`` would never end) and a file that cannot be read (permissions, I/O
    error) raise ``ValueError`` naming the path and the fix.
    """
    if path.is_dir():
        raise ValueError(f"{path} is a folder, expected a text file")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file (a device, pipe or socket); give a text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(
            f"{path} cannot be read ({e.strerror or e}); check that it is readable by you (permissions)"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} cannot be decoded; "
            "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _lines(text: str) -> list[str]:
    """Non-blank lines, stripped of surrounding whitespace."""
    return [s for s in (line.strip() for line in text.splitlines()) if s]


def read_folder(path: str | Path, suffix: str = ".txt") -> LabeledItems:
    """Read a folder of ``<Category>.txt`` files, one item per line (the PyTorch char-RNN tutorial layout).

    The category is the file name without its suffix; blank lines are skipped; other files and hidden files
    are ignored. Files must be UTF-8. A folder with a single category file is accepted (it suits generation);
    call :meth:`LabeledItems.require_classes` before training a classifier.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no ``*.txt`` files, an empty category file, or a file that is not UTF-8.
    """
    folder = _existing(path, "folder")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise ValueError(
            f"{folder} cannot be listed ({e.strerror or e}); check that it is readable by you (permissions)"
        ) from None
    files = sorted(p for p in entries if p.suffix == suffix and p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no {suffix} files; expected one <Category>{suffix} per category")
    items: list[str] = []
    labels: list[str] = []
    for f in files:
        lines = _lines(_read_text(f))
        if not lines:
            raise ValueError(f"{f} is empty: a category file needs at least one item (one per line)")
        items += lines
        labels += [f.stem] * len(lines)
    return LabeledItems(items, labels, _class_order(labels), source=str(folder))


def read_lines(path: str | Path) -> LabeledItems:
    """Read one text file, one item per line (makemore's ``names.txt`` layout), as unlabeled items.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty (no non-blank line) or not UTF-8.
    """
    p = _existing(path, "file")
    lines = _lines(_read_text(p))
    if not lines:
        raise ValueError(f"{p} is empty: expected one item per line")
    return LabeledItems(lines, None, [], source=str(p))


_TEXT_NAMES = ("text", "item", "name", "word", "sentence", "input", "x", "string", "sequence")
_LABEL_NAMES = ("label", "category", "class", "target", "y", "country", "language", "gender", "tag")


def _pick_column(header: list[str], wanted: str | int | None, role: str, path: Path) -> int | None:
    if wanted is None:
        return None
    if isinstance(wanted, int):
        if not -len(header) <= wanted < len(header):
            raise ValueError(f"{path}: {role} column {wanted} is out of range; it has {len(header)} columns")
        return wanted % len(header)
    if wanted not in header:
        raise ValueError(f"{path}: no {role} column {wanted!r}; its columns are {header!r}")
    return header.index(wanted)


def read_csv(
    path: str | Path,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    delimiter: str | None = None,
) -> LabeledItems:
    """Read a CSV (first row = header) with a text column and, optionally, a label column.

    Columns are chosen by name (or 0-based index). Left out, they are detected: a column named like
    ``text``/``name``/``item`` is the text and one named like ``label``/``category``/``class`` the label;
    failing that, a file with exactly two columns takes the column with fewer distinct values as the label
    (the first column as text on a tie), and a file with one column is unlabeled text. A named text column
    with no label-like column among several is unlabeled text. The delimiter is ``\\t`` for ``.tsv`` files,
    else detected among ``, ; \\t |`` from the header line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an empty file, a missing or ambiguous column, a row with the wrong number of fields, an
            empty text or label cell, or a file that is not UTF-8.
    """
    p = _existing(path, "file")
    text = _read_text(p)
    if not text.strip():
        raise ValueError(f"{p} is empty: expected a header row and one row per item")
    if delimiter is None:
        if p.suffix.lower() == ".tsv":
            delimiter = "\t"
        else:
            first = next(line for line in text.splitlines() if line.strip())
            delimiter = max(",;\t|", key=first.count) if any(c in first for c in ",;\t|") else ","
    rows = [(n, r) for n, r in _csv_rows(text, delimiter, p) if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{p} has no header row (every row is blank); expected a header row and one row per item")
    header = [h.strip() for h in rows[0][1]]
    body = rows[1:]
    if not body:
        raise ValueError(f"{p} has a header but no rows")
    for line_no, r in body:
        if len(r) != len(header):
            raise ValueError(
                f"{p}, line {line_no}: {len(r)} fields, but the header has {len(header)} ({header!r}); "
                "quote cells that contain the delimiter"
            )
    ti = _pick_column(header, text_column, "text", p)
    li = _pick_column(header, label_column, "label", p)
    if ti is None or li is None:
        ti, li = _detect_columns(header, body, ti, li, p)
    items, labels = [], []
    for line_no, r in body:
        item = r[ti].strip()
        if not item:
            raise ValueError(f"{p}, line {line_no}: empty text in column {header[ti]!r}")
        items.append(item)
        if li is not None:
            lab = r[li].strip()
            if not lab:
                raise ValueError(f"{p}, line {line_no}: empty label in column {header[li]!r}")
            labels.append(lab)
    lab_list = labels if li is not None else None
    return LabeledItems(items, lab_list, _class_order(labels) if labels else [], source=str(p))


def _csv_rows(text: str, delimiter: str, path: Path) -> list[tuple[int, list[str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 2**20))  # cells up to 64 MiB, not the module's 131,072
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = []
    try:
        for r in reader:
            out.append((reader.line_num, r))
    except csv.Error as e:
        raise ValueError(
            f"{path}: malformed CSV near line {reader.line_num} ({e}); check its quotes and delimiters"
        ) from None
    return out


def _detect_columns(
    header: list[str], body: list[tuple[int, list[str]]], ti: int | None, li: int | None, path: Path
) -> tuple[int, int | None]:
    """Choose the text and/or label column the caller left out (see :func:`read_csv`)."""
    text_given = ti is not None
    lower = [h.lower() for h in header]

    def by_name(names: Sequence[str], exclude: int | None) -> int | None:
        for n in names:
            for i, h in enumerate(lower):
                if h == n and i != exclude:
                    return i
        return None

    if ti is None:
        ti = by_name(_TEXT_NAMES, li)
    if li is None:
        li = by_name(_LABEL_NAMES, ti)
    if ti is not None and li is not None:
        return ti, li
    if len(header) == 1:
        if li is not None:
            raise ValueError(f"{path}: its only column {header[0]!r} is the label; there is no text column")
        return 0, None
    if len(header) == 2:
        if ti is not None:
            return ti, 1 - ti
        if li is not None:
            return 1 - li, li
        # Labels repeat, items mostly do not: the column with fewer distinct values is the label.
        distinct = [len({r[i].strip() for _, r in body}) for i in (0, 1)]
        return (0, 1) if distinct[1] <= distinct[0] else (1, 0)
    if text_given and ti is not None:
        return ti, None  # the caller named the text column and no column looks like a label: unlabeled
    raise ValueError(
        f"{path} has {len(header)} columns {header!r}; name the text and label columns "
        "(text_column/label_column, --text-column/--label-column)"
    )


def load_data(
    path: str | Path,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
) -> LabeledItems:
    """Read ``path`` by what it is.

    A folder is read by :func:`read_folder`, a ``.csv``/``.tsv`` file by :func:`read_csv`, any other file by
    :func:`read_lines` (one item per line).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: see the reader that applies.
    """
    p = _existing(path)
    if p.is_dir():
        return read_folder(p)
    if p.suffix.lower() in (".csv", ".tsv"):
        return read_csv(p, text_column=text_column, label_column=label_column)
    if text_column is not None or label_column is not None:
        raise ValueError(f"{p}: text/label columns apply to .csv/.tsv files only")
    return read_lines(p)


# ----------------------------------------------------------------------------------------------------------
# The embedded default: gender-guesser's nam_dict.txt
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Split:
    """A train/validation/test split and a JSON-able record of it.

    Attributes:
        train, val, test: the three parts (``test`` is empty for :func:`carve_validation`).
        record: ``{"seed", "val_fraction", "test_fraction", "sizes", "train", "val", "test"}`` where the
            last three are the sorted distinct items of each part; :func:`apply_split` rebuilds the split from
            it.
    """

    train: LabeledItems
    val: LabeledItems
    test: LabeledItems
    record: dict[str, Any]


def _rank_key(seed: int, item: str) -> bytes:
    # A hash, not a shuffled RNG stream: an item's position does not depend on the other items or on the
    # Python or NumPy version, so the split is reproducible everywhere.
    return hashlib.blake2b(f"{seed}\x00{item}".encode(), digest_size=8).digest()


def _dedupe(data: LabeledItems) -> tuple[list[str], list[str | None]]:
    seen: set[tuple[str, str | None]] = set()
    items: list[str] = []
    labels: list[str | None] = []
    src_labels: Sequence[str | None] = data.labels if data.labels is not None else [None] * len(data)
    for it, lab in zip(data.items, src_labels, strict=True):
        if (it, lab) not in seen:
            seen.add((it, lab))
            items.append(it)
            labels.append(lab)
    return items, labels


def _allocate(sizes: Mapping[str, int], fraction: float, cap: Mapping[str, int]) -> dict[str, int]:
    """Split ``round(N * fraction)`` (at least 1 when fraction > 0) over strata by largest remainder."""
    total_n = sum(sizes.values())
    target = 0 if fraction <= 0 else max(1, round(total_n * fraction))
    share = {k: n * target / total_n if total_n else 0.0 for k, n in sizes.items()}
    out = {k: min(math.floor(share[k]), cap[k]) for k in sizes}
    # Hand out the rest by largest remainder (ties: the bigger stratum, then the name), within each cap.
    for k in sorted(sizes, key=lambda k: (-(share[k] - math.floor(share[k])), -sizes[k], k)):
        if sum(out.values()) >= target:
            break
        if out[k] < cap[k]:
            out[k] += 1
    # Caps (keep a stratum's last item in train) can leave a shortfall; fill it from the biggest strata.
    for k in sorted(sizes, key=lambda k: (-sizes[k], k)):
        while sum(out.values()) < target and out[k] < cap[k]:
            out[k] += 1
    return out


def split_items(data: LabeledItems, val: float = 0.1, test: float = 0.1, seed: int = 0) -> Split:
    """Split into train/validation/test by distinct item, stratified by label, deterministic in ``seed``.

    Steps: exact duplicate ``(item, label)`` pairs are removed; items are grouped by string (a string with two
    labels is one group, stratified by its most frequent label, the first seen on a tie); within each class
    the groups are ordered by a seeded hash and the first ones go to test, the next to validation. Each class
    gets its share of ``round(G * test)`` and ``round(G * val)`` groups (``G`` groups in all; at least one
    when the fraction is positive) by largest remainder, and keeps at least one group in train.

    Args:
        data: labeled or unlabeled items.
        val: fraction of distinct items for validation, in ``[0, 1)``.
        test: fraction for test, in ``[0, 1)``; ``val + test < 1``.
        seed: the split's seed.

    Returns:
        A :class:`Split`; its parts keep ``data``'s order and classes.

    Raises:
        ValueError: bad fractions, or too few distinct items to give every part at least one.
    """
    for name, f in (("val", val), ("test", test)):
        if not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {f!r}")
    if val + test >= 1:
        raise ValueError(f"val + test must be < 1 so that training data remains, got {val} + {test}")
    items, labels = _dedupe(data)
    groups: dict[str, list[str | None]] = {}
    for it, lab in zip(items, labels, strict=True):
        groups.setdefault(it, []).append(lab)
    n_groups = len(groups)
    needed = 1 + (val > 0) + (test > 0)
    if n_groups < needed:
        raise ValueError(
            f"{data.source or 'the data'} has {n_groups} distinct item{'s' * (n_groups != 1)}; "
            f"a train/val/test split needs at least {needed}"
        )
    strata: dict[str, list[str]] = defaultdict(list)
    for it, labs in groups.items():
        c = Counter(labs)
        top = max(c.values())
        strata[next(lab for lab in labs if c[lab] == top) or ""].append(it)
    for members in strata.values():
        members.sort(key=lambda it: _rank_key(seed, it))
    sizes = {k: len(v) for k, v in strata.items()}
    n_test = _allocate(sizes, test, {k: n - 1 for k, n in sizes.items()})
    n_val = _allocate(sizes, val, {k: n - 1 - n_test[k] for k, n in sizes.items()})
    if (test > 0 and sum(n_test.values()) == 0) or (val > 0 and sum(n_val.values()) == 0):
        raise ValueError(
            f"{data.source or 'the data'}: too few items per class ({sizes}) to carve validation/test parts; "
            "give more data or explicit validation/test files"
        )
    part_of: dict[str, str] = {}
    for k, members in strata.items():
        for j, it in enumerate(members):
            part_of[it] = "test" if j < n_test[k] else "val" if j < n_test[k] + n_val[k] else "train"
    return _build_split(data, items, labels, part_of, seed, val, test)


def _build_split(
    data: LabeledItems,
    items: list[str],
    labels: list[str | None],
    part_of: Mapping[str, str],
    seed: int | None,
    val: float | None,
    test: float | None,
) -> Split:
    idx: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, it in enumerate(items):
        idx[part_of[it]].append(i)
    parts = {}
    for name, ii in idx.items():
        parts[name] = LabeledItems(
            items=[items[i] for i in ii],
            labels=None if data.labels is None else [str(labels[i]) for i in ii],
            classes=list(data.classes),
            source=f"{data.source} [{name}]" if data.source else name,
        )
    record: dict[str, Any] = {
        "seed": seed,
        "val_fraction": val,
        "test_fraction": test,
        "sizes": {k: len(v) for k, v in parts.items()},
    }
    for name in ("train", "val", "test"):
        record[name] = sorted({it for it, part in part_of.items() if part == name})
    return Split(parts["train"], parts["val"], parts["test"], record)


def carve_validation(train: LabeledItems, val: float = 0.1, seed: int = 0) -> Split:
    """Carve a validation part out of ``train`` (when the user gives explicit validation/test files).

    The same rules as :func:`split_items` with ``test=0``; the returned :class:`Split` has an empty ``test``.
    To keep items of an explicit test file out of training, first drop them with :func:`exclude_items`.
    """
    if not 0 < val < 1:
        raise ValueError(f"val fraction must be in (0, 1), got {val!r}")
    return split_items(train, val=val, test=0.0, seed=seed)


def apply_split(data: LabeledItems, record: Mapping[str, Any]) -> Split:
    """Rebuild a split from a saved :attr:`Split.record` (e.g. a run folder's) on the same data.

    Raises:
        ValueError: ``data`` holds items that the record does not place, i.e. the data changed.
    """
    try:
        part_of = {it: name for name in ("train", "val", "test") for it in record[name]}
    except (KeyError, TypeError):
        raise ValueError("not a split record: expected 'train', 'val' and 'test' item lists") from None
    items, labels = _dedupe(data)
    missing = sorted({it for it in items if it not in part_of})
    if missing:
        raise ValueError(
            f"{data.source or 'the data'} has {len(missing)} items the saved split does not place "
            f"(e.g. {missing[0]!r}); the data changed since the split was made"
        )
    seed, val, test = record.get("seed"), record.get("val_fraction"), record.get("test_fraction")
    return _build_split(data, items, labels, part_of, seed, val, test)


def exclude_items(data: LabeledItems, *others: LabeledItems) -> LabeledItems:
    """``data`` without the items whose string occurs in ``others`` (keep explicit val/test out of train)."""
    drop = {it for o in others for it in o.items}
    return data.subset(i for i, it in enumerate(data.items) if it not in drop)
