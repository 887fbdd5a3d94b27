"""Run kinds: what ``rnnkit train --task NAME`` trains, and how ``evaluate``, ``predict`` and ``sample`` use it.

A kind is one class (a subclass of :class:`RunKind`) in one module, registered with :func:`register_kind`:

- ``name`` — the ``--task`` value (``classify``, ``generate``, ``tag``, ``seq2seq``, ``lm``, ``forecast``, ...);
  ``app`` — the ``"app"`` key it writes into ``config.json`` (the built-in text kinds write none, as always);
- ``flags`` — the ``rnnkit train`` flags it adds (:class:`Flag`; their values reach it as ``RunOptions.options``);
- ``handles(opts)`` — claims options of another ``--task`` name by their data (``classify`` on a ``.ts`` file is
  series classification);
- ``train`` — ONE skeleton for every kind (:meth:`RunKind.train`): begin → prepare data and split → model config
  → trainer settings → build the model → write the run start → fit → score → finish, with hooks
  (:meth:`~RunKind.prepare`, :meth:`~RunKind.model_config`, :meth:`~RunKind.trainer_settings`,
  :meth:`~RunKind.data_config`, :meth:`~RunKind.score`, :meth:`~RunKind.finish`);
- ``evaluate``, ``predict``, ``sample``, ``summary`` — the other commands.

Kinds of other packages register through the entry-point group ``rnnkit.kinds`` (an entry point names a module,
or an object in it; loading the module registers its kind): ``[rnnkit.kinds] toy = toykind``. They are loaded
lazily, the first time the registry is asked.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rnnkit import distributed
from rnnkit.checkpoint import load_run_weights, read_json, save_run_weights
from rnnkit.ranges import check_memory
from rnnkit.runs.folder import (
    CONFIG_FILE,
    MEMBERS_DIR,
    OutLock,
    Run,
    add_train_facts,
    begin_run,
    finish_run,
    hold_out,
    read_config,
    run_config,
    write_run_start,
)
from rnnkit.runs.options import DEFAULTS, OPTIONS_KEY, RunOptions, options_record, restore_run_options
from rnnkit.runs.registry import (  # re-exported: the registry is part of the run-kind API
    ENTRY_POINT_GROUP,
    KINDS,
    check_embedded,
    kind_for,
    kind_of,
    kind_of_config,
    load_kinds,
    register_kind,
    selectable_kinds,
)
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.train import (
    CHECKPOINT_DIR,
    TensorBoardLogger,
    TrainConfig,
    TrainResult,
    fit,
    has_checkpoint,
    seed_everything,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Flag",
    "Prepared",
    "RunKind",
    "accuracy_line",
    "check_embedded",
    "evaluate_path",
    "kind_for",
    "kind_of",
    "kind_of_config",
    "load_kinds",
    "note",
    "predict_lines",
    "register_kind",
    "sample_run",
    "selectable_kinds",
    "summary_line",
    "train_run",
]


@dataclass(frozen=True)
class Flag:
    """One ``rnnkit train`` flag a kind adds: ``argparse`` arguments, and where its value goes.

    The value reaches the kind as ``RunOptions.options[dest]`` (after ``convert``, when given). With ``only``, the
    flag belongs to this kind alone: naming it with another ``--task`` is an error that says ``only``.
    """

    name: str  # "--horizon"
    kwargs: dict[str, Any] = field(default_factory=dict)  # type, choices, default, help, action, metavar, ...
    convert: Callable[[Any], Any] | None = None
    only: str | None = None  # e.g. "--tbptt trains one long stream: use it with --task lm"

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.name.lstrip("-").replace("-", "_")


@dataclass
class Prepared:
    """What :meth:`RunKind.prepare` read: the training and validation batches, the split and everything the
    model config, ``config.json`` and scoring need.

    ``train_batches(epoch) -> batches`` gives one epoch's batches (its order a function of seed and epoch);
    ``val_batches`` the validation batches in a fixed order.
    """

    train_batches: Callable[[int], Any] | Any  # or an object the trainer iterates itself (lm's TokenStream)
    val_batches: Any
    split_record: dict[str, Any] | None
    vocab: Any = None  # a Vocab, or None for real-valued inputs
    classes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # whatever the kind's own hooks need
    trainer: TrainConfig | None = None  # set by the skeleton: the trainer settings used
    result: TrainResult | None = None  # set by the skeleton after fit, before score
    log: Callable[[str], None] | None = None  # set by the skeleton: where the hooks' notes go (stderr lines)


class RunKind:
    """The base of every run kind (see the module docstring); subclasses override the hooks they need."""

    name: ClassVar[str] = ""
    app: ClassVar[str | None] = None  # the "app" key of config.json; None: write none (the text kinds)
    flags: ClassVar[tuple[Flag, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    selectable: ClassVar[bool] = True  # a --task choice; False: reached only through handles()
    help: ClassVar[str] = ""  # one phrase for `rnnkit train --help`: "tag (synced many->many)"
    endpoints: ClassVar[tuple[str, ...]] = ("predict",)  # what `rnnkit serve` answers for a run: predict, sample
    # `train --resume --out RUN` naming this kind (the text kinds: classify is --task's default) continues RUN with
    # the kind that wrote it; other kinds refuse to resume another kind's run
    yields_on_resume: ClassVar[bool] = False
    # the common options (RunOptions fields) this kind never reads: given with another value than their default,
    # they are refused in one line by check_flags, like another kind's flags
    ignores: ClassVar[tuple[str, ...]] = ()
    # the `rnnkit predict` options this kind reads (besides ITEMs); another one given is refused by predict_lines
    predict_flags: ClassVar[tuple[str, ...]] = ("data",)
    ensembles: ClassVar[bool] = (
        False  # `train --ensemble K` trains K members into one run (runs.folder.ENSEMBLE_FORMAT)
    )
    # the `--data embedded:NAME` values this kind reads (data shipped in installed packages); another embedded:
    # name for its task is refused in one line listing the task's names (runs.registry.check_embedded)
    embedded: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------------------------------------- dispatch
    def handles(self, opts: RunOptions) -> bool:
        """Whether this kind claims ``opts`` although ``opts.task`` names another kind (dispatch by data)."""
        return False

    # ---------------------------------------------------------------------------------------------- train
    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        """The options a run of rnnkit 0.1.0 (whose config.json does not hold them whole) was started with,
        rebuilt from its saved config; see :func:`rnnkit.runs.options.restore_options`. Runs written since hold
        their options whole and never reach this."""
        raise NotImplementedError(f"the {self.name} kind cannot resume runs")

    def restore(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        """The options the run in ``saved`` (its config.json) was started with (:func:`restore_run_options`)."""
        return restore_run_options(saved, opts, self.options_from_config)

    def train(
        self,
        opts: RunOptions,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        log: Callable[[str], None] | None = None,
        tensorboard: str | Path | None = None,
    ) -> dict[str, Any]:
        """Train the model ``opts`` describes into the run folder ``out``; returns the metrics written.

        ``tensorboard``: a folder for TensorBoard event files of the fit (:class:`~rnnkit.train.TensorBoardLogger`).

        The shared skeleton: :meth:`check_options` → claim ``out`` and restore the options on resume →
        :meth:`prepare` the data and split → :meth:`model_config` → :meth:`trainer_settings` → build the model →
        write ``config.json`` and ``split.json`` → :meth:`before_fit` → fit (with :meth:`fit_options`) →
        :meth:`score` on the test part → write ``metrics.json`` and plots → :meth:`finish`.
        """
        out = Path(out)
        self.check_flags(opts)
        if not resume and opts.options.get("ensemble") is None:
            members = self.default_ensemble(opts)
            if members > 1:
                opts = replace(opts, options={**opts.options, "ensemble": members})
        opts = self.check_options(opts)
        with contextlib.ExitStack() as stack:
            tb = None if tensorboard is None else stack.enter_context(TensorBoardLogger(tensorboard))
            lock = stack.enter_context(hold_out(out, create=not resume))
            return self._train(opts, out, resume=resume, overwrite=overwrite, log=log, lock=lock, tb=tb)

    def _train(
        self,
        opts: RunOptions,
        out: Path,
        *,
        resume: bool,
        overwrite: bool,
        log: Callable[[str], None] | None,
        lock: OutLock,
        tb: TensorBoardLogger | None = None,
    ) -> dict[str, Any]:
        members = ensemble_size(opts, out, resume)
        if members > 1 and not self.ensembles:
            raise ValueError(
                f"--ensemble does not apply to {self.name} runs (classification and forecasting only): drop it"
            )
        opts, saved, existing = begin_run(
            out, opts, resume=resume, overwrite=overwrite, app=self.app, options_from=self.restore
        )
        prepared = self.prepare(opts, saved)
        prepared.log = log
        mcfg = self.model_config(opts, prepared)
        if members > 1:
            mcfg = replace(mcfg, ensemble=members)
        tcfg = self.trainer_settings(opts, prepared)
        self.check_resources(mcfg, tcfg)
        seed_everything(opts.seed)
        model = self.build(mcfg)
        extra = self.config_extra(opts, prepared)
        config = run_config(self.app, mcfg, tcfg, self.data_config(opts, prepared), **extra)
        window = getattr(mcfg, "window", None) if getattr(mcfg, "model", None) == "window" else None  # W, if used
        filled = {**(self.defaults or DEFAULTS.get(self.name, {})), "window": window}
        config[OPTIONS_KEY] = options_record(opts, filled)
        write_run_start(out, config, prepared.split_record, resume=resume, overwrite=overwrite and existing, lock=lock)
        self.before_fit(out, prepared, saved, log)
        if members > 1:
            result, member_runs = self._fit_members(model, prepared, tcfg, config, opts.seed, out, log, resume)
        else:
            result = fit(
                model,
                prepared.train_batches,
                prepared.val_batches,
                tcfg,
                out,
                resume=resume,
                overwrite=overwrite,
                log=log,
                handle_sigint=True,
                **self.fit_options(prepared),
                **({} if tb is None else tb.callbacks()),
            )
        prepared.trainer, prepared.result = tcfg, result
        run = Run(out, config, model.eval(), prepared.vocab, prepared.classes)
        self.after_fit(run, prepared)
        if members > 1:
            member_metrics = [self._score_member(m, prepared, opts.seed + i) for i, m in enumerate(member_runs)]
        metrics, files = self.score(run, prepared)
        if members > 1:
            metrics.update(ensemble=members, members=member_metrics)
        metrics.setdefault("processes", distributed.world_size())  # every kind: how many torchrun processes trained
        metrics = finish_run(run, metrics, result, **files)
        self.finish(run, metrics, prepared)
        return metrics

    def check_flags(self, opts: RunOptions) -> None:
        """No flag is ignored: refuse in one line a kind flag this kind does not declare (another kind's:
        ``--horizon`` with ``--task classify``) and a common option it never reads (:attr:`ignores`) set to
        anything but its default. One generic check for every kind, before ``out`` is claimed."""
        declared = {f.dest for f in self.flags} | ({"ensemble"} if self.ensembles else set())  # one --ensemble flag
        foreign = [k for k in opts.options if k not in declared]
        defaults = {f.name: f.default for f in dataclass_fields(RunOptions) if f.default is not MISSING}
        foreign += [k for k in self.ignores if k in defaults and getattr(opts, k) != defaults[k]]
        if foreign:
            names = ", ".join(sorted(_flag_name(k) for k in foreign))  # sorted: the same words in any load order
            which = "does" if len(foreign) == 1 else "do"
            raise ValueError(
                f"{names} {which} not apply to --task {self.name} ({self.help or self.name}): leave "
                f"{'it' if len(foreign) == 1 else 'them'} out (see rnnkit train --help, the group --task {self.name})"
            )

    def check_options(self, opts: RunOptions) -> RunOptions:
        """Refuse (or normalise) this call's options before ``out`` is claimed (default: as they are)."""
        return opts

    def default_ensemble(self, opts: RunOptions) -> int:
        """Members a new run without ``--ensemble`` trains (default: 1, one model); a resumed run keeps what it
        was started with."""
        return 1

    # ---------------------------------------------------------------------------------------------- ensembles
    def _fit_members(
        self,
        model: nn.Module,
        prepared: Prepared,
        tcfg: TrainConfig,
        config: dict[str, Any],
        seed: int,
        out: Path,
        log: Callable[[str], None] | None,
        resume: bool = False,
    ) -> tuple[TrainResult, list[Run]]:
        """``train --ensemble K``: member ``i`` starts from the weights a single run of seed ``seed + i`` starts
        from and trains (trainer seed ``tcfg.seed + i``) into ``out/members/<i>``, on the run's one split and
        batches. The ensemble's weights (every member's best) go to ``out/model.safetensors``. Returns a result
        that sums the members' training (no curve of its own) and each member as a run.

        ``resume``: a member whose folder holds a checkpoint continues from it (a finished member just gives its
        result, as :func:`~rnnkit.train.fit` does), one without starts as in a fresh run."""
        results, runs = [], []
        member_cfg = ModelConfig.from_dict({**config["model"], "ensemble": 1})
        for i, member in enumerate(model.members):
            seed_everything(seed + i)
            member.load_state_dict(self.build(member_cfg).state_dict())  # the init of a single run of seed + i
            folder = out / MEMBERS_DIR / str(i)
            again = resume and has_checkpoint(folder / CHECKPOINT_DIR)
            verb = "continuing" if again else "training"
            note(log, f"ensemble member {i + 1}/{len(model.members)} (seed {seed + i}): {verb} in {folder}")
            result = fit(
                member,
                prepared.train_batches,
                prepared.val_batches,
                replace(tcfg, seed=tcfg.seed + i),
                folder,
                resume=again,
                log=log,
                handle_sigint=True,
                **self.fit_options(prepared),
            )
            if result.stopped_reason == "interrupted":
                raise ValueError(
                    f"interrupted in ensemble member {i + 1}; its checkpoint is saved: continue the ensemble with "
                    f"rnnkit train --resume --out {out}"
                )
            load_run_weights(folder, member)  # its best weights
            results.append(result)
            runs.append(
                Run(folder, {**config, "model": member_cfg.to_dict()}, member.eval(), prepared.vocab, prepared.classes)
            )
        if distributed.is_main():
            save_run_weights(out, model)
        total = replace(
            results[-1],
            history=[],
            train_seconds=sum(r.train_seconds for r in results),
            epochs_run=sum(r.epochs_run for r in results),
            steps=sum(r.steps for r in results),
            best_epoch=None,
            stopped_reason=",".join(sorted({r.stopped_reason for r in results})),
        )
        return total, list(zip(runs, results, strict=True))

    def _score_member(self, member: tuple[Run, TrainResult], prepared: Prepared, seed: int) -> dict[str, Any]:
        """One member's test metrics (the kind's :meth:`score`: ``test_*`` and ``macro_f1``), seed and training."""
        run, result = member
        metrics, _ = self.score(run, prepared)
        keep = {k: v for k, v in metrics.items() if k.startswith("test_") or k == "macro_f1"}
        return add_train_facts({"seed": seed, **keep}, result)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        """Read the data, split it, build (or, on resume, restore from ``saved``) the vocabulary, make batches."""
        raise NotImplementedError

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        """The task model's config."""
        raise NotImplementedError

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        """The trainer's settings (default: the options' epochs, batch size, lr, seed, ... with the kind's
        defaults)."""
        return opts.train_config(self.defaults)

    def build(self, mcfg: ModelConfig) -> nn.Module:
        """A fresh model (default: the task-model registry's)."""
        return build_model(mcfg)

    def check_resources(self, mcfg: ModelConfig, tcfg: TrainConfig) -> None:
        """Refuse in one line, before anything is allocated or written, a model whose training would need more
        memory than is available (:func:`rnnkit.ranges.check_memory`). The rule (docs/errors.md, "Memory"): the
        model is built on the ``meta`` device (shapes only) to count its parameters P; training holds 5 float32
        copies of them (weights, gradients, AdamW's two moments, the best weights): ``20·P`` bytes; plus, per time
        step of a batch, the states and gates kept for the backward pass, ``4·B·(8·H·L·D + E)`` bytes."""
        try:
            with torch.device("meta"):
                params = sum(p.numel() for p in self.build(mcfg).parameters())
        except (RuntimeError, NotImplementedError, TypeError):  # a kind's model that cannot be built on meta
            return
        directions = 2 if getattr(mcfg, "bidirectional", False) else 1
        inputs = max(getattr(mcfg, "embed_dim", 0) or 0, getattr(mcfg, "input_features", 0) or 0)
        per_step = 4 * tcfg.batch_size * (8 * mcfg.hidden_size * mcfg.num_layers * directions + inputs)
        check_memory(
            20 * params + per_step,
            f"training a {mcfg.model} of {params:,} parameters (hidden {mcfg.hidden_size}, {mcfg.num_layers} layers,"
            f" inputs {inputs}, batch {tcfg.batch_size})",
            "choose a smaller --hidden, --embed, --layers or --batch-size",
        )

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        """The ``"data"`` section of config.json: what rebuilds the data and its split."""
        raise NotImplementedError

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        """Further top-level keys of config.json (default: the vocabulary and the classes)."""
        vocab = None if prepared.vocab is None else prepared.vocab.to_dict()
        return {"vocab": vocab, "classes": prepared.classes}

    def before_fit(
        self, out: Path, prepared: Prepared, saved: dict[str, Any] | None, log: Callable[[str], None] | None
    ) -> None:
        """After config.json is written (on resume: nothing is), before training: checks and notes (default: none)."""

    def fit_options(self, prepared: Prepared) -> dict[str, Any]:
        """Further keyword arguments of :func:`rnnkit.train.fit`, e.g. ``evaluate_fn`` (default: none)."""
        return {}

    def after_fit(self, run: Run, prepared: Prepared) -> None:
        """After training (every member of an ensemble), before anything is scored: fit what the run adds beside
        its networks — the series kind's kernel ridge — write it into the run folder (rank 0 only under torchrun)
        and keep it in ``run.parts`` for :meth:`score` (default: nothing)."""

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        """Test metrics of the trained run, and further ``NAME.json`` files to write beside metrics.json."""
        raise NotImplementedError

    def finish(self, run: Run, metrics: dict[str, Any], prepared: Prepared) -> None:
        """After metrics.json is written: further plots (default: nothing)."""

    # ---------------------------------------------------------------------------------------------- use
    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        """Metrics of ``run`` on the data at ``path``, or on its saved test split when ``path`` is None."""
        raise NotImplementedError(f"the {self.name} kind has no evaluate")

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        """``rnnkit predict``: one printable line per item."""
        raise ValueError(f"{run.path} is a {self.name} run; it has no predict")

    def sample(self, run: Run, **options: Any) -> list[str]:
        """``rnnkit sample``: items drawn from the run."""
        raise ValueError(f"{run.path} is a {run.task} run; sample needs a generate run (use `rnnkit predict`)")

    def gradient_batch(self, run: Run, size: int) -> Any:
        """``rnnkit gradients RUN``: the first ``size`` items of the run's saved test part as one
        :class:`~rnnkit.data.batching.Batch` with targets, for :func:`rnnkit.diagnostics.gradient_flow` (default:
        refused in one line — a kind without a recurrent core, or one that has not said how)."""
        raise ValueError(f"{run.path} is a {self.name} run; rnnkit gradients cannot replay its model")

    def summary(self, metrics: dict[str, Any]) -> str:
        """The one human line of a run's headline metrics."""
        return ", ".join(f"{k} {v}" for k, v in metrics.items() if k.startswith("test_"))

    def serve_info(self, run: Run) -> dict[str, Any]:
        """What ``rnnkit serve``'s ``/health`` lists beyond task, app, model and classes (default: nothing)."""
        return {}

    def serve_predict(self, run: Run, items: list[str], **options: Any) -> dict[str, Any]:
        """``rnnkit serve``'s ``/predict`` answer (default: ``{"lines": [...]}``, the lines ``rnnkit predict``
        prints); ``options`` are the request's ``top_k``, ``beam`` and ``horizon`` that were given."""
        return {"lines": [str(line) for line in self.predict(run, items, **options)]}


_FLAG_NAMES = {
    "embed_dim": "--embed",
    "hidden_size": "--hidden",
    "num_layers": "--layers",
    "conditional": "--unconditional",
}


def _flag_name(dest: str) -> str:
    """The command-line flag of a RunOptions field or a kind flag's dest."""
    return _FLAG_NAMES.get(dest) or "--" + dest.replace("_", "-")


# -------------------------------------------------------------------------------------------------- ensembles
def ensemble_size(opts: RunOptions, out: Path, resume: bool) -> int:
    """K of ``train --ensemble K`` (1 when the kind has no such flag). On ``--resume`` the K the run in ``out``
    was started with (an ``--ensemble`` that differs from it is refused in one line)."""
    members = int(opts.options.get("ensemble") or 1)
    if resume:
        saved_k = 1
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            saved_k = int(read_json(out / CONFIG_FILE).get("model", {}).get("ensemble", 1))
        if members > 1 and members != saved_k:
            what = f"an ensemble of {saved_k}" if saved_k > 1 else "a single model"
            raise ValueError(
                f"--resume continues the run in {out} as it was started ({what}); it cannot change --ensemble "
                "(leave it out, or start a new run with another --out)"
            )
        return saved_k
    return members


def note(log: Callable[[str], None] | None, line: str) -> None:
    """Say ``line`` through ``log``, else on stderr — from rank 0 only under torchrun (the others stay quiet)."""
    if log is not None:
        log(line)
    elif distributed.is_main():
        print(line, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------------- shared lines
def accuracy_line(metrics: dict[str, Any]) -> str:
    """One human line of a classifier's or generator's headline metrics (shared by the kinds that report them)."""
    if "test_accuracy" in metrics:
        parts = ""
        if "network_accuracy" in metrics:  # a text classifier with its count member: the parts alone
            parts = f"network alone {metrics['network_accuracy']:.3f}, counts alone {metrics['ngram_accuracy']:.3f}; "
        return (
            f"test accuracy {metrics['test_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
            f"({parts}majority-class baseline {metrics['majority_accuracy']:.3f})"
        )
    s = f"test NLL {metrics['test_nll_per_char']:.3f} nats/char"
    notes = []
    if "network_nll_per_char" in metrics:  # a generator with its count member: the parts alone
        alone = metrics["network_nll_per_char"], metrics["ngram_nll_per_char"]
        notes.append(f"network alone {alone[0]:.3f}, counts alone {alone[1]:.3f}")
    if "bigram_nll_per_char" in metrics:
        notes.append(f"bigram baseline {metrics['bigram_nll_per_char']:.3f}")
    return s + (f" ({'; '.join(notes)})" if notes else "")


# -------------------------------------------------------------------------------------------------- commands
def train_run(
    opts: RunOptions,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    tensorboard: str | Path | None = None,
) -> dict[str, Any]:
    """Train the model ``opts`` describes into the run folder ``out``; returns the metrics written.

    An existing ``out`` with a run in it is refused unless ``resume`` (continue it) or ``overwrite`` (replace it).
    ``tensorboard``: a folder for TensorBoard event files of the fit (step and epoch scalars; see
    :mod:`rnnkit.train.tensorboard`).
    ``train --resume --out RUN`` needs no ``--task``: the kind that wrote a run continues it.
    """
    out = Path(out)
    kind = kind_for(opts)
    if not resume:  # a resumed run reads its own data, whatever --data says
        check_embedded(opts)
    if kind.yields_on_resume and resume and not overwrite and (out / CONFIG_FILE).is_file():
        # not a run, or of a newer format: claim_out says which, in the order it checks
        with contextlib.suppress(ValueError):
            kind = kind_of_config(read_config(out), out)
    if tensorboard is None:
        return kind.train(opts, out, resume=resume, overwrite=overwrite, log=log)
    return kind.train(opts, out, resume=resume, overwrite=overwrite, log=log, tensorboard=tensorboard)


def evaluate_path(run: Run, path: str | None, text_column: str | None = None, label_column: str | None = None):
    """Metrics of ``run`` on the file/folder ``path``, or on its own saved test split when ``path`` is None."""
    return kind_of(run).evaluate(run, path, text_column=text_column, label_column=label_column)


def predict_lines(run: Run, items: Sequence[str], **options: Any) -> list[str]:
    """``rnnkit predict``: one printable line per item, for any kind. An option given (not None) that the run's
    kind does not read (its :attr:`RunKind.predict_flags`) is refused in one line, not ignored."""
    kind = kind_of(run)
    foreign = [k for k, v in options.items() if v is not None and k not in kind.predict_flags]
    if foreign:
        names = ", ".join(_flag_name(k) for k in foreign)
        reads = ", ".join(_flag_name(k) for k in kind.predict_flags)
        raise ValueError(
            f"{names} {'does' if len(foreign) == 1 else 'do'} not apply to predict on a {kind.name} run (it reads "
            f"{reads}): leave {'it' if len(foreign) == 1 else 'them'} out"
        )
    return kind.predict(run, list(items), **options)


def sample_run(run: Run, **options: Any) -> list[str]:
    """``rnnkit sample``: items drawn from a run of a kind that samples."""
    return kind_of(run).sample(run, **options)


def summary_line(metrics: dict[str, Any]) -> str:
    """The one human line of a run's headline metrics, for any kind."""
    load_kinds()
    kind = KINDS.get(metrics.get("app") or metrics.get("task", ""))
    if kind is None:
        return KINDS["classify"].summary(metrics)
    return kind.summary(metrics)
