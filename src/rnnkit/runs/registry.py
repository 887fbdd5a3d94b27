"""The run-kind registry: every kind by name, the built-in kinds and those of other packages (entry-point group
``rnnkit.kinds``), loaded lazily the first time the registry is asked.

It sits below :mod:`rnnkit.runs.folder` (which asks it which kind wrote a run) and :mod:`rnnkit.runs.kind` (the
base class the kinds subclass): it imports neither, and the kind modules only by name, when :func:`load_kinds`
runs, so the package's imports point one way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit.runs.options import DEFAULTS, RunOptions

if TYPE_CHECKING:
    from rnnkit.runs.folder import Run
    from rnnkit.runs.kind import RunKind

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "check_embedded",
    "kind_for",
    "kind_of",
    "kind_of_config",
    "load_kinds",
    "register_kind",
    "selectable_kinds",
]

ENTRY_POINT_GROUP = "rnnkit.kinds"
BUILTIN = (
    "rnnkit.runs.text",
    "rnnkit.runs.tag",
    "rnnkit.runs.seq2seq",
    "rnnkit.runs.forecast",
    "rnnkit.runs.lm",
    "rnnkit.runs.classify_series",
)
"""The modules of the built-in kinds, in the order ``--task`` lists them."""


def _is_kind(obj: Any) -> bool:
    """A RunKind subclass or instance (checked by shape: this module does not import the base class)."""
    return bool(getattr(obj, "name", None)) and callable(getattr(obj, "train", None))


# -------------------------------------------------------------------------------------------------- the registry
KINDS: dict[str, RunKind] = {}
"""Registered run kinds by name (the ``--task`` value; for runs, the ``"app"`` key or the model's task)."""

_loaded = False


def register_kind(kind: RunKind | type[RunKind]) -> RunKind:
    """Make ``kind`` reachable from every command; its defaults join :data:`DEFAULTS` under its name.

    Usable as a class decorator (returns the class's instance registered)."""
    instance = kind() if isinstance(kind, type) else kind
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no name: set the class attribute name")
    KINDS[instance.name] = instance
    DEFAULTS.setdefault(instance.name, dict(instance.defaults))
    return kind  # type: ignore[return-value]


def load_kinds() -> dict[str, RunKind]:
    """Import the built-in kinds and those of installed packages (entry points ``rnnkit.kinds``), once."""
    global _loaded
    if _loaded:
        return KINDS
    _loaded = True
    for module in BUILTIN:
        importlib.import_module(module)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()  # a module registers its kind when imported; an object naming a kind is registered here
        if _is_kind(loaded) and loaded.name not in KINDS:
            register_kind(loaded)
    return KINDS


def kind_for(opts: RunOptions) -> RunKind:
    """The kind that trains ``opts``: one whose ``handles`` claims it, else the one named ``opts.task``."""
    load_kinds()
    for kind in KINDS.values():
        if kind.handles(opts):
            return kind
    if opts.task not in KINDS:
        names = sorted(k.name for k in KINDS.values() if k.selectable)
        raise ValueError(f"unknown task {opts.task!r}; choose one of: {', '.join(names)}")
    return KINDS[opts.task]


def check_embedded(opts: RunOptions) -> None:
    """Refuse ``--data embedded:NAME`` that no kind of ``opts.task`` reads, in one line listing the names its kinds
    declare (:attr:`RunKind.embedded`); a task whose kinds declare none is left to its reader (a plugin kind may
    read embedded data it does not declare)."""
    if opts.data is None or not opts.data.startswith("embedded:"):
        return
    load_kinds()
    known = [
        name
        for kind in KINDS.values()
        for name in getattr(kind, "embedded", ())
        if kind.name == opts.task or kind.handles(replace(opts, data=name))
    ]
    if known and opts.data not in known:
        choose = ", ".join(known)
        raise ValueError(f"unknown embedded data {opts.data!r} for --task {opts.task}; choose one of: {choose}")


def kind_of_config(config: dict[str, Any], path: Path | str = "the run") -> RunKind:
    """The kind that wrote a run's ``config``: its ``"app"`` key, else (text runs) its model's task."""
    load_kinds()
    name = config.get("app") or config.get("model", {}).get("task")
    if name not in KINDS:
        raise ValueError(f"{path} was written by the {name!r} task, which this rnnkit version does not know")
    return KINDS[name]


def kind_of(run: Run) -> RunKind:
    """The kind a loaded run belongs to."""
    return kind_of_config(run.config, run.path)


def selectable_kinds() -> list[RunKind]:
    """The kinds ``--task`` offers, in registration order."""
    return [k for k in load_kinds().values() if k.selectable]
