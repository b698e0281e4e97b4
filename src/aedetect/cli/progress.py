"""Keras callbacks: a progress bar for the command line."""

from __future__ import annotations

import keras
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress(keras.callbacks.Callback):
    """A Rich progress bar over epochs showing the training and validation loss."""

    def __init__(self, epochs: int | str | None, console: Console | None = None):
        super().__init__()
        self._bar = Progress(TextColumn("training"), BarColumn(),
                             TextColumn("epoch {task.completed}/{task.total}"),
                             TextColumn("{task.fields[losses]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=console or Console(stderr=True))
        total = epochs if isinstance(epochs, int) else None  # "auto": known when training starts
        self._task = self._bar.add_task("train", total=total, losses="")

    def __enter__(self):
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def on_train_begin(self, logs=None):
        self._bar.update(self._task, total=self.params.get("epochs"))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        losses = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if "loss" in k)
        self._bar.update(self._task, completed=epoch + 1, losses=losses)

    def on_train_end(self, logs=None):
        # Early stopping ends before the last epoch: show the bar as finished.
        done = self._bar.tasks[0].completed
        self._bar.update(self._task, total=done)
