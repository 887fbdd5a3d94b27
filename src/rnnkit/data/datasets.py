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

Its parts, one module each: :mod:`rnnkit.data.items` (:class:`LabeledItems`), :mod:`rnnkit.data.text_files`
(the readers), :mod:`rnnkit.data.names` (the embedded default) and :mod:`rnnkit.data.splits`; every name
imports from here too.
"""

from rnnkit.data.items import LabeledItems
from rnnkit.data.names import DEFAULT_NUM_CATEGORIES, default_names, join_compound, nam_dict_path
from rnnkit.data.splits import Split, apply_split, carve_validation, exclude_items, split_items
from rnnkit.data.text_files import _existing as _existing  # used by other readers and kinds
from rnnkit.data.text_files import _read_text as _read_text
from rnnkit.data.text_files import load_data, read_csv, read_folder, read_lines

__all__ = [
    "DEFAULT_NUM_CATEGORIES",
    "LabeledItems",
    "Split",
    "apply_split",
    "carve_validation",
    "default_names",
    "exclude_items",
    "join_compound",
    "load_data",
    "nam_dict_path",
    "read_csv",
    "read_folder",
    "read_lines",
    "split_items",
]
