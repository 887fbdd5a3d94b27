"""Atomic writes, safetensors weights and resumable checkpoints: round trips, and refusal of bad files."""

from __future__ import annotations

import copy
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rnnkit import checkpoint as ckpt
from rnnkit.checkpoint import (
    CheckpointError,
    load_run_weights,
    load_safetensors,
    save_run_weights,
    write_bytes_atomic,
    write_json_atomic,
)
from rnnkit.train.checkpoints import has_checkpoint, load_checkpoint, read_checkpoint_state, save_checkpoint


class Tiny(nn.Module):
    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.rnn = nn.GRU(4, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(self.emb(x))  # h: (1, B, H)
        return self.out(h[-1])  # (B, 3)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _trained(seed: int = 0, steps: int = 3) -> tuple[Tiny, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        _step(model, opt, sched)
    return model, opt, sched


def _step(model: Tiny, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler) -> None:
    x = torch.randint(0, 7, (5, 4))
    y = torch.randint(0, 3, (5,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


# ---------------------------------------------------------------------------------------------------------------
# atomic writes


@pytest.mark.parametrize("stage", ["written", "fsynced"])
def test_atomic_write_keeps_old_file_when_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str):
    target = tmp_path / "config.json"
    write_json_atomic(target, {"version": 1})

    def crash(s: str, path: Path) -> None:
        if s == stage:
            assert path.exists() and path != target  # the temporary file holds the new bytes
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt, "_write_hook", crash)
    with pytest.raises(OSError, match="simulated"):
        write_json_atomic(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left behind


def test_atomic_write_keeps_old_file_when_replace_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "w.bin"
    write_bytes_atomic(target, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(ckpt.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert len(list(tmp_path.iterdir())) == 1


def test_write_json_refuses_nan(tmp_path: Path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "m.json", {"x": float("nan")})
    assert not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# run weights


def test_run_weights_round_trip(tmp_path: Path):
    model, _, _ = _trained()
    path = save_run_weights(tmp_path, model)
    assert path == tmp_path / "model.safetensors"
    torch.manual_seed(99)
    other = Tiny()
    load_run_weights(tmp_path, other)
    assert _same(_snapshot(model), _snapshot(other))


def _corrupt_cases(tmp_path: Path, model: nn.Module) -> dict[str, Path]:
    save_run_weights(tmp_path, model)
    good = (tmp_path / "model.safetensors").read_bytes()
    cases = {}
    for name, data in {
        "truncated": good[: len(good) // 2],
        "header-only": good[:8],
        "empty": b"",
        "garbage": b"\x13" * 200,
        "bitflip-header": good[:20] + b"\xff\xff" + good[22:],
    }.items():
        d = tmp_path / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(data)
        cases[name] = d
    d = tmp_path / "pickle"
    d.mkdir()
    with open(d / "model.safetensors", "wb") as f:
        pickle.dump(model.state_dict(), f)
    cases["pickle"] = d
    d = tmp_path / "torch-save"
    d.mkdir()
    torch.save(model.state_dict(), d / "model.safetensors")
    cases["torch-save"] = d
    return cases


def test_corrupt_or_pickled_weights_are_refused_and_model_untouched(tmp_path: Path):
    model, _, _ = _trained()
    cases = _corrupt_cases(tmp_path, model)
    torch.manual_seed(5)
    target = Tiny()
    before = _snapshot(target)
    for name, folder in cases.items():
        with pytest.raises(ValueError) as info:
            load_run_weights(folder, target)
        assert str(folder) in str(info.value), name
        assert _same(before, _snapshot(target)), name
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_run_weights(cases["pickle"], target)
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_run_weights(cases["torch-save"], target)


def test_pickle_is_never_executed(tmp_path: Path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_run_weights(tmp_path, Tiny())
    assert not marker.exists()


def test_shape_or_key_mismatch_is_refused_and_model_untouched(tmp_path: Path):
    save_run_weights(tmp_path, Tiny(hidden=6))
    target = Tiny(hidden=8)
    before = _snapshot(target)
    with pytest.raises(CheckpointError, match="shape"):
        load_run_weights(tmp_path, target)
    assert _same(before, _snapshot(target))
    # a file with a missing and an unexpected key
    sd = {k: v for k, v in Tiny().state_dict().items() if k != "out.bias"}
    sd["extra"] = torch.zeros(2)
    save_file(sd, tmp_path / "model.safetensors")
    target = Tiny()
    before = _snapshot(target)
    with pytest.raises(CheckpointError, match=r"missing out\.bias.*unexpected extra"):
        load_run_weights(tmp_path, target)
    assert _same(before, _snapshot(target))


def test_missing_weights_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no weights file"):
        load_run_weights(tmp_path, Tiny())


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip_restores_everything_exactly(tmp_path: Path):
    model, opt, sched = _trained(seed=0)
    best = {k: v + 1 for k, v in model.state_dict().items()}
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    state = {"epoch": 3, "step": 30, "best_metric": 0.25, "bad_epochs": 1, "history": [{"epoch": 1, "x": None}]}
    save_checkpoint(tmp_path, model, opt, sched, state, best_weights=best)
    opt_saved, sched_saved = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    saved_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    expected_draws = (random.random(), float(np.random.rand()), torch.rand(3))
    random.setstate(saved_rng[0])
    np.random.set_state(saved_rng[1])
    torch.set_rng_state(saved_rng[2])
    # continue the original for two steps (consumes the RNG)
    for _ in range(2):
        _step(model, opt, sched)
    continued = _snapshot(model)

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model2, opt2, sched2 = _trained(seed=7, steps=1)  # different weights, optimizer state and scheduler position
    ck = load_checkpoint(tmp_path, model2, opt2, sched2)
    assert ck.state == state
    assert ck.best_weights is not None and _same(ck.best_weights, best)
    assert (random.random(), float(np.random.rand())) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])
    assert sched2.state_dict() == sched_saved
    opt_loaded = opt2.state_dict()
    assert opt_loaded["param_groups"] == opt_saved["param_groups"]  # betas come back as a tuple
    assert opt_loaded["state"].keys() == opt_saved["state"].keys()
    for i, st in opt_saved["state"].items():
        assert st.keys() == opt_loaded["state"][i].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for k, v in st.items():
            assert torch.equal(v, opt_loaded["state"][i][k]) and v.dtype == opt_loaded["state"][i][k].dtype
    # restore the RNG as saved and continue: bitwise the same as the original continuation
    ck.restore_rng()
    for _ in range(2):
        _step(model2, opt2, sched2)
    assert _same(continued, _snapshot(model2))
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_checkpoint_layout_and_previous_removed(tmp_path: Path):
    model, opt, sched = _trained()
    first = save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1, "step": 3})
    second = save_checkpoint(tmp_path, model, opt, sched, {"epoch": 2, "step": 6})
    assert not first.exists() and second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["latest.json", second.name])
    assert sorted(p.name for p in second.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    assert read_checkpoint_state(tmp_path) == {"epoch": 2, "step": 6}
    doc = json.loads((second / "state.json").read_text())
    assert doc["optimizer"]["param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.999]}


@pytest.mark.parametrize("stage", ["written", "fsynced", "renamed"])
@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_crash_during_checkpoint_keeps_a_loadable_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, nth: int
):
    model, opt, sched = _trained()
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    old = _snapshot(model)
    _step(model, opt, sched)
    new = _snapshot(model)
    calls = []

    def crash(s: str, path: Path) -> None:
        if s == stage:
            calls.append(path)
            if len(calls) == nth:
                raise KeyboardInterrupt("killed (simulated)")

    monkeypatch.setattr(ckpt, "_write_hook", crash)
    # 4 atomic writes per checkpoint: model, state tensors, state.json, then latest.json (the commit point)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, opt, sched, {"epoch": 2})
    monkeypatch.setattr(ckpt, "_write_hook", None)
    committed = stage == "renamed" and nth == 4
    fresh = Tiny()
    ck = load_checkpoint(tmp_path, fresh, restore_rng=False)
    assert ck.state == {"epoch": 2 if committed else 1}
    assert _same(new if committed else old, _snapshot(fresh))
    # the next save cleans up whatever the crash left
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 3})
    assert len(list(tmp_path.iterdir())) == 2


def test_corrupt_checkpoint_refused_without_touching_anything(tmp_path: Path):
    model, opt, sched = _trained()
    sub = save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    model2, opt2, sched2 = _trained(seed=3)
    before, opt_before = _snapshot(model2), json.dumps(str(opt2.state_dict()))
    torch.manual_seed(4)
    rng_before = torch.get_rng_state()

    # truncated optimizer tensors: the model must stay as it was even though its own file is fine
    data = (sub / "state.safetensors").read_bytes()
    (sub / "state.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"state\.safetensors"):
        load_checkpoint(tmp_path, model2, opt2, sched2)
    assert _same(before, _snapshot(model2))
    assert json.dumps(str(opt2.state_dict())) == opt_before
    assert torch.equal(torch.get_rng_state(), rng_before)
    (sub / "state.safetensors").write_bytes(data)

    # weights replaced by a valid safetensors file with other values: the checksum catches it
    save_file({k: v + 1 for k, v in model.state_dict().items()}, sub / "model.safetensors")
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path, model2, opt2, sched2)
    assert _same(before, _snapshot(model2))

    # weights replaced by a pickle
    torch.save(model.state_dict(), sub / "model.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path, model2, opt2, sched2)

    # broken JSON
    (sub / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(tmp_path, model2, opt2, sched2)
    assert _same(before, _snapshot(model2))


def test_checkpoint_for_another_model_is_refused(tmp_path: Path):
    model, opt, sched = _trained()
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    other = Tiny(hidden=8)
    before = _snapshot(other)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path, other, torch.optim.AdamW(other.parameters()))
    assert _same(before, _snapshot(other))


def test_no_checkpoint(tmp_path: Path):
    assert not has_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_checkpoint(tmp_path, Tiny())


def test_load_safetensors_checks_sha(tmp_path: Path):
    sha = ckpt.save_safetensors_atomic(tmp_path / "a.safetensors", {"x": torch.arange(3)})
    assert torch.equal(load_safetensors(tmp_path / "a.safetensors", sha256=sha)["x"], torch.arange(3))
    with pytest.raises(CheckpointError, match="checksum"):
        load_safetensors(tmp_path / "a.safetensors", sha256="0" * 64)


def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path: Path):
    # a header of 0x0280 bytes begins the file with b"\x80\x02", a pickle's protocol-2 opcode: still safetensors
    from safetensors.torch import save

    from rnnkit.checkpoint import load_safetensors, read_safetensors_header, save_safetensors_atomic

    # find the key length in memory (each atomic write fsyncs), then write that file once
    n = next((n for n in range(1, 1000) if save({"w" * n: torch.zeros(1)})[:2] == b"\x80\x02"), None)
    if n is None:
        pytest.fail("no key length gave a header of 0x0280 bytes")
    path = tmp_path / "w.safetensors"
    save_safetensors_atomic(path, {"w" * n: torch.zeros(1)})
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert torch.equal(load_safetensors(path)["w" * n], torch.zeros(1))
    assert list(read_safetensors_header(path)) == ["w" * n]


# ---------------------------------------------------------------------------------------------------------------
# header-only checks, deeper validation, roll back


def test_safetensors_header_is_read_without_the_data(tmp_path: Path):
    from rnnkit.checkpoint import check_weights_file, read_safetensors_header

    model = Tiny()
    path = save_run_weights(tmp_path, model)
    header = read_safetensors_header(path)
    assert {k: (tuple(v.shape), v.dtype, v.device.type) for k, v in header.items()} == {
        k: (tuple(v.shape), v.dtype, "meta") for k, v in model.state_dict().items()
    }
    check_weights_file(path, model)
    with torch.device("meta"):
        bigger = Tiny(hidden=4096)  # no memory is spent on a meta model
    with pytest.raises(
        CheckpointError, match=r"rnn\.weight_hh_l0 has shape \(18, 6\), the model expects \(12288, 4096\)"
    ):
        check_weights_file(path, bigger)
    data = path.read_bytes()
    for name, raw, needle in [
        ("empty", b"", "empty"),
        ("short", data[:5], "truncated or corrupt"),
        ("huge-header", (10**12).to_bytes(8, "little") + b"{}", "bad header size"),
        ("bad-json", (4).to_bytes(8, "little") + b"{no}", "bad header"),
        ("pickle", pickle.dumps(model.state_dict()), "never loads pickles"),
        ("dtype", _with_header({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}), "unsupported"),
    ]:
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(CheckpointError, match=needle):
            read_safetensors_header(tmp_path / name)


def _with_header(header: dict) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"\0" * 8


def _edit_state_json(folder: Path, edit) -> None:
    sub = next(p for p in folder.iterdir() if p.is_dir())
    doc = json.loads((sub / "state.json").read_text())
    edit(doc)
    (sub / "state.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["optimizer"]["param_groups"][0].update(lr="fast"), "optimizer setting 'lr'"),
        (lambda d: d["optimizer"]["param_groups"][0].update(betas={"__tuple__": [0.9]}), "optimizer setting 'betas'"),
        (lambda d: d["optimizer"]["param_groups"][0].update(momentum=0.9), "optimizer settings"),
        (lambda d: d["optimizer"]["param_groups"][0]["params"].append(99), "parameter groups"),
        (lambda d: d["optimizer"].update(state=[]), "optimizer state is malformed"),
        (lambda d: d["scheduler"].update(optimizer=None), "scheduler state has unknown entries"),
        (lambda d: d["scheduler"].update(last_epoch="x"), "scheduler entry 'last_epoch'"),
        (lambda d: d.pop("files"), "file list"),
        (lambda d: d["files"].update({"model.safetensors": 5}), "file list"),
        (lambda d: d.update(state=[1]), "trainer state"),
        (lambda d: d["rng"]["python"].update(state=[1, 2]), "RNG state"),
        (lambda d: d.update(version=2), "version 2"),
    ],
)
def test_malformed_checkpoint_json_is_refused_before_anything_changes(tmp_path: Path, edit, needle: str):
    model, opt, sched = _trained()
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    _edit_state_json(tmp_path, edit)
    model2, opt2, sched2 = _trained(seed=3)
    before, opt_before, sched_before = _snapshot(model2), copy.deepcopy(opt2.state_dict()), sched2.state_dict()
    rng_before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(tmp_path, model2, opt2, sched2)
    assert _same(before, _snapshot(model2))
    assert repr(opt2.state_dict()) == repr(opt_before) and sched2.state_dict() == sched_before
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_a_failure_while_applying_rolls_everything_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model, opt, sched = _trained()
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    model2, opt2, sched2 = _trained(seed=3)
    before, opt_before = _snapshot(model2), copy.deepcopy(opt2.state_dict())

    real = type(sched2).load_state_dict
    calls = []

    def refuses_the_checkpoint(self, sd):  # torch refusing the saved state (but not its own, for the roll back)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated failure inside torch")
        return real(self, sd)

    # the scheduler is applied last: the model and the optimizer have changed by then
    monkeypatch.setattr(type(sched2), "load_state_dict", refuses_the_checkpoint)
    with pytest.raises(CheckpointError, match=r"cannot be applied.*simulated.*nothing was changed"):
        load_checkpoint(tmp_path, model2, opt2, sched2)
    assert _same(before, _snapshot(model2))
    after = opt2.state_dict()
    assert repr(after["param_groups"]) == repr(opt_before["param_groups"])
    for i, st in opt_before["state"].items():
        for k, v in st.items():
            assert torch.equal(v, after["state"][i][k])


def test_json_files_that_are_pickles_or_binary_are_named(tmp_path: Path):
    from rnnkit.checkpoint import read_json

    (tmp_path / "p.json").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="Python pickle, not JSON; rnnkit never loads pickles"):
        read_json(tmp_path / "p.json")
    (tmp_path / "b.json").write_bytes(b"{\xff}")
    with pytest.raises(CheckpointError, match="not UTF-8 JSON text"):
        read_json(tmp_path / "b.json")


def test_a_header_only_file_cannot_pass_for_large_weights(tmp_path: Path):
    # the header declares 4 GB of float32 but the file holds none of it: refused from the header alone
    import struct

    from rnnkit.checkpoint import CheckpointError, read_safetensors_header

    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000000], "data_offsets": [0, 4 * 10**9]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_safetensors_header(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000000], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(CheckpointError, match="declares 4 bytes"):
        read_safetensors_header(path)
