"""Data for rnnkit: vocabularies, datasets (layouts, the embedded default, splits) and the batch format.

Flow: :func:`load_data` / :func:`default_names` → :func:`split_items` → :meth:`Vocab.build` on the training part
→ :meth:`Vocab.encode` → :func:`collate_classification` / :func:`collate_generation` (batches from
:class:`BucketBatchSampler`, :class:`Batches`) → a task model's ``forward(batch)``.
"""

from rnnkit.data.batching import (
    IGNORE_INDEX,
    Batch,
    Batches,
    BucketBatchSampler,
    collate_classification,
    collate_generation,
    collate_sequences,
)
from rnnkit.data.datasets import (
    DEFAULT_NUM_CATEGORIES,
    LabeledItems,
    Split,
    apply_split,
    carve_validation,
    default_names,
    exclude_items,
    join_compound,
    load_data,
    nam_dict_path,
    read_csv,
    read_folder,
    read_lines,
    split_items,
)
from rnnkit.data.synthetic import (
    ADDING_BASELINE_MSE,
    TEMPORAL_ORDER_CHANCE,
    MemoryTask,
    copy_baseline,
    describe_task,
    make_adding,
    make_copy,
    make_task,
    make_temporal_order,
)
from rnnkit.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, fold_ascii

__all__ = [
    "ADDING_BASELINE_MSE",
    "BOS",
    "DEFAULT_NUM_CATEGORIES",
    "EOS",
    "IGNORE_INDEX",
    "PAD",
    "SPECIALS",
    "TEMPORAL_ORDER_CHANCE",
    "UNK",
    "Batch",
    "Batches",
    "BucketBatchSampler",
    "LabeledItems",
    "MemoryTask",
    "Split",
    "Vocab",
    "apply_split",
    "carve_validation",
    "collate_classification",
    "collate_generation",
    "collate_sequences",
    "copy_baseline",
    "default_names",
    "describe_task",
    "exclude_items",
    "fold_ascii",
    "join_compound",
    "load_data",
    "make_adding",
    "make_copy",
    "make_task",
    "make_temporal_order",
    "nam_dict_path",
    "read_csv",
    "read_folder",
    "read_lines",
    "split_items",
]
