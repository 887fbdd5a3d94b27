"""Readers of text items in the layouts people have (:func:`load_data` picks one by what the path is):

- a folder of ``<Category>.txt`` files, one item per line (the PyTorch char-RNN tutorials' ``data/names/``):
  :func:`read_folder`;
- one text file, one item per line (makemore's ``names.txt``), unlabeled: :func:`read_lines`;
- a CSV (or TSV) with a text column and a label column: :func:`read_csv`.

:func:`_existing` and :func:`_read_text` (a path that exists; a file's text, size-capped and decoded) serve the
other readers of :mod:`rnnkit.data` and the run kinds too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    pass
from rnnkit.data.items import LabeledItems, _class_order


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
