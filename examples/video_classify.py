"""Classify tiny synthetic videos by motion direction: a per-frame CNN in front of a GRU (runs in well under a minute).

Each video is 3–6 noisy 8×8 frames of a 2×2 bright square moving one pixel per frame left, right, up or down
(:func:`rnnkit.data.frames.make_moving_squares`). One frame cannot tell the direction; the model must compare
frames over time — the lecture's "each element in a sequence could be ... even a full tensor itself (e.g., video
processing)". The model is a :class:`~rnnkit.tasks.classifier.SequenceClassifier` whose input encoder runs
:class:`~rnnkit.tasks.frames.FrameCNN` (``torch.nn`` conv layers only) on every frame of the ``(B, T, 1, 8, 8)``
batch, trained with :func:`rnnkit.train.fit`.

    python examples/video_classify.py              # built-in CNN (config.frame_encoder = "cnn")
    python examples/video_classify.py --custom     # your own frame module passed as frame_module=
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from torch import nn

from rnnkit.data.frames import DIRECTIONS, collate_frames, make_moving_squares
from rnnkit.metrics import accuracy, confusion_matrix
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.config import ModelConfig
from rnnkit.train import TrainConfig, fit, seed_everything


def custom_frame_module(embed: int) -> nn.Module:
    """Any module mapping ``(N, 1, 8, 8)`` frames to ``(N, E)`` vectors works as a per-step encoder."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # (N, 8, 8, 8)
        nn.ReLU(),
        nn.Flatten(),  # (N, 512)
        nn.Linear(8 * 8 * 8, embed),  # (N, E)
    )


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=800, help="training videos")
    p.add_argument("--test", type=int, default=400, help="test videos")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training videos")
    p.add_argument("--batch-size", type=int, default=32, help="videos per batch")
    p.add_argument("--hidden", type=int, default=32, help="GRU hidden size H")
    p.add_argument("--embed", type=int, default=32, help="size E of each frame's vector")
    p.add_argument("--custom", action="store_true", help="use a hand-built frame module instead of FrameCNN")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the order")
    args = p.parse_args(argv)

    seed_everything(args.seed)
    train_x, train_y = make_moving_squares(args.train, seed=args.seed)
    val_x, val_y = make_moving_squares(max(1, args.test // 2), seed=args.seed + 1)
    test_x, test_y = make_moving_squares(args.test, seed=args.seed + 2)

    config = ModelConfig(
        task="classify",
        model="gru",
        num_classes=len(DIRECTIONS),
        embed_dim=args.embed,
        hidden_size=args.hidden,
        dropout=0.0,
        frame_encoder="custom" if args.custom else "cnn",
        frame_shape=[1, 8, 8],
    )
    model = SequenceClassifier(config, frame_module=custom_frame_module(args.embed) if args.custom else None)
    print(
        f"model: {'custom frame module' if args.custom else 'FrameCNN'} + GRU(H={args.hidden}), "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )

    def batches(epoch: int) -> list:
        order = np.random.default_rng([args.seed, epoch]).permutation(args.train)
        chunks = [order[i : i + args.batch_size] for i in range(0, args.train, args.batch_size)]
        return [collate_frames([train_x[i] for i in c], [train_y[i] for i in c]) for c in chunks]

    val = [collate_frames(val_x, val_y)]
    start = time.perf_counter()
    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=3e-3,
        seed=args.seed,
        monitor="accuracy",
        progress="log",
        log_every=0,
    )
    fit(model, batches, val, tcfg, log=print)
    seconds = time.perf_counter() - start

    pred = model.predict_proba(collate_frames(test_x)).argmax(-1).tolist()
    acc = accuracy(test_y, pred)
    print(f"test accuracy {acc:.3f} on {args.test} videos (chance 0.25), trained in {seconds:.1f} s")
    conf = confusion_matrix(test_y, pred, len(DIRECTIONS))
    print("confusion (rows: true, columns: predicted):", ", ".join(DIRECTIONS))
    for name, row in zip(DIRECTIONS, conf, strict=True):
        print(f"  {name:>5}: {row}")
    return acc


if __name__ == "__main__":
    main()
