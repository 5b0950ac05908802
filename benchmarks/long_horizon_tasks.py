r"""Sequence classification tasks for the long-horizon study (``long_horizon.py``); nothing is downloaded.

Every task is a :class:`SequenceTask`: inputs ``[samples, T, channels]`` (float32), integer
labels, and ``window``, the number of final steps the network's read-out averages over.

* :func:`sequential_digits`: scikit-learn's 8x8 digits, one pixel per step (T = 64), in
  raster order or in a fixed random order (:func:`pixel_permutation`).
* :func:`mnist1d_sequence`: MNIST-1D from the ``mnist1d`` package's generator (Greydanus,
  2020), the length-40 signal fed one value per step; ``stretch=k`` repeats every value
  ``k`` times (T = 40 k), as a finer time step would.
* :func:`delayed_cue`: generated evidence accumulation. Cues arrive on a left and a right
  channel at random times; after a silent delay a go signal asks which side had more.
  The delay is the knob.
* :func:`japanese_vowels`: UCI's Japanese Vowels (nine speakers, 12 LPC cepstrum channels,
  7-29 frames), as shipped inside ``sktime``; :class:`TaskUnavailable` without it.

Example::

    >>> from long_horizon_tasks import delayed_cue
    >>> task = delayed_cue(delay=50, n_train=64, n_test=32)
    >>> task.x_train.shape, task.window
    (torch.Size([64, 116, 3]), 10)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SequenceTask", "TaskUnavailable", "pixel_permutation", "sequential_digits", "mnist1d_sequence",
    "delayed_cue", "cue_counts", "japanese_vowels", "readout_window",
]


class TaskUnavailable(RuntimeError):
    """A task's data cannot be had on this machine without a download (a package is missing)."""


@dataclass
class SequenceTask:
    """One classification task on sequences.

    ``x_*`` are ``[samples, T, channels]`` float32, ``y_*`` int64 labels in
    ``[0, num_classes)``; a network reads its answer out over the final ``window`` steps.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    window: int

    @property
    def T(self) -> int:
        """The sequence length (number of time steps)."""
        return int(self.x_train.shape[1])

    @property
    def channels(self) -> int:
        """Input channels per step."""
        return int(self.x_train.shape[2])


def readout_window(T: int, fraction: float = 0.1) -> int:
    r"""The read-out window of a task without a response period: the final ``fraction`` of the steps.

    .. math:: W = \max(1, \lceil f\,T \rceil)

    Example::

        >>> readout_window(64), readout_window(640), readout_window(5)
        (7, 64, 1)
    """
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, math.ceil(round(fraction * T, 9)))


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def pixel_permutation(n: int = 64, seed: int = 0) -> Tensor:
    """A fixed random order of ``n`` pixels (a permutation of ``0..n-1``), the same for every call with ``seed``.

    Example::

        >>> sorted(pixel_permutation(8).tolist()) == list(range(8))
        True
    """
    _positive(n, "n")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def sequential_digits(permuted: bool = False, seed: int = 0) -> SequenceTask:
    r"""scikit-learn's 8x8 digits, one pixel per step: T = 64, one channel, values in [0, 1].

    The 1797 images are split 75/25, stratified (``random_state=0``, the demo's split).
    ``permuted=True`` feeds the pixels in the order :func:`pixel_permutation` ``(64, seed)``
    (the same order for every image), which breaks the raster order's locality.
    The read-out window is the final 10 % of the steps (:func:`readout_window`).

    Example::

        >>> task = sequential_digits()
        >>> task.x_train.shape, task.num_classes
        (torch.Size([1347, 64, 1]), 10)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    xtr, xte = (torch.tensor(a / 16.0, dtype=torch.float32) for a in (xtr, xte))
    name = "digits-seq"
    if permuted:
        order = pixel_permutation(64, seed)
        xtr, xte = xtr[:, order], xte[:, order]
        name = "digits-perm"
    return SequenceTask(name, xtr.unsqueeze(-1), torch.tensor(ytr), xte.unsqueeze(-1), torch.tensor(yte), 10,
                        readout_window(64))


@functools.lru_cache(maxsize=1)
def _mnist1d_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())  # the generator; get_dataset() would download a pickle
    return raw["x"], raw["y"], raw["x_test"], raw["y_test"]


def mnist1d_sequence(stretch: int = 1) -> SequenceTask:
    r"""MNIST-1D (4000 train / 1000 test, 10 classes) as a one-channel sequence, T = 40 ``stretch``.

    Generated by the ``mnist1d`` package with its default arguments (no download),
    standardised with the training set's mean and standard deviation. ``stretch=k`` holds
    every value for ``k`` steps:

    .. math:: x'_{t} = x_{\lfloor t / k \rfloor}, \qquad t = 0 .. 40k - 1

    The read-out window is the final 10 % of the steps.

    Example::

        >>> mnist1d_sequence(stretch=4).x_test.shape
        torch.Size([1000, 160, 1])
    """
    _positive(stretch, "stretch")
    xtr, ytr, xte, yte = _mnist1d_raw()
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = ((a - mean) / std for a in (xtr, xte))
    if stretch > 1:
        xtr, xte = (a.repeat_interleave(stretch, dim=1) for a in (xtr, xte))
    T = xtr.shape[1]
    name = "mnist1d" if stretch == 1 else f"mnist1d-x{stretch}"
    return SequenceTask(name, xtr.unsqueeze(-1), torch.tensor(ytr), xte.unsqueeze(-1), torch.tensor(yte), 10,
                        readout_window(T))


# delayed-cue layout: channel 0 = left cues, 1 = right cues, 2 = go signal
CUE_CHANNELS = 3
GO_CHANNEL = 2


def _cue_trials(n: int, delay: int, n_cues: int, slot: int, cue_length: int, response: int,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    labels = torch.arange(n) % 2  # exactly balanced, then shuffled
    labels = labels[torch.randperm(n, generator=generator)]
    majority = n_cues // 2 + 1
    # how many cues the winning side gets: uniform over majority..n_cues (close calls included)
    wins = torch.randint(majority, n_cues + 1, (n,), generator=generator)
    T = n_cues * slot + delay + response
    x = torch.zeros(n, T, CUE_CHANNELS)
    for i in range(n):
        winner = int(labels[i])
        sides = torch.full((n_cues,), 1 - winner)
        sides[torch.randperm(n_cues, generator=generator)[: int(wins[i])]] = winner
        jitter = torch.randint(0, slot - cue_length + 1, (n_cues,), generator=generator)
        for k in range(n_cues):
            start = k * slot + int(jitter[k])
            x[i, start:start + cue_length, int(sides[k])] = 1.0
    x[:, T - response:, GO_CHANNEL] = 1.0
    return x, labels


def cue_counts(x: Tensor, cue_length: int = 4) -> Tensor:
    """Count the cues per side in delayed-cue inputs ``[samples, T, 3]``: ``[samples, 2]`` (left, right).

    A cue is ``cue_length`` consecutive steps at 1 on its side's channel.

    Example::

        >>> task = delayed_cue(delay=10, n_train=4, n_test=2)
        >>> bool(((cue_counts(task.x_train)[:, 1] > cue_counts(task.x_train)[:, 0]).long() == task.y_train).all())
        True
    """
    return x[:, :, :2].sum(dim=1).round().long() // cue_length


def delayed_cue(
    delay: int, n_train: int = 2048, n_test: int = 512, n_cues: int = 7, slot: int = 8, cue_length: int = 4,
    response: int = 10, seed: int = 0,
) -> SequenceTask:
    r"""Evidence accumulation with a delay: which side, left or right, showed more cues?

    Three input channels: left cues, right cues, go. ``n_cues`` (odd) cues of
    ``cue_length`` steps at value 1 arrive one per ``slot``-step slot, each at a random
    offset within its slot (two cues in neighbouring slots may touch), each on a random
    side; then ``delay`` silent steps; then the go
    channel is 1 for the final ``response`` steps, over which the network answers
    (``window = response``). The label is the side with more cues, 0 = left, 1 = right:

    .. math:: y = \mathbb{1}\Big[\sum_t x_{t,\text{right}} > \sum_t x_{t,\text{left}}\Big],
              \qquad T = n_\text{cues}\,\text{slot} + \text{delay} + \text{response}

    Labels are exactly balanced in each split (``n`` even); the winner's share of the cues is
    uniform over the possible majorities (4 to 7 of 7). Train and test sets come from
    independent streams of ``seed``.

    Example::

        >>> task = delayed_cue(delay=200, n_train=8, n_test=8)
        >>> task.T, task.channels, task.num_classes
        (266, 3, 2)
    """
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ValueError(f"delay must be a non-negative int, got {delay!r}")
    for value, name in ((n_train, "n_train"), (n_test, "n_test"), (slot, "slot"), (cue_length, "cue_length"),
                        (response, "response"), (n_cues, "n_cues")):
        _positive(value, name)
    if n_cues % 2 == 0:
        raise ValueError(f"n_cues must be odd so that one side always wins, got {n_cues}")
    if cue_length > slot:
        raise ValueError(f"cue_length ({cue_length}) must fit in a slot ({slot} steps)")
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = _cue_trials(n_train, delay, n_cues, slot, cue_length, response, gen)
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    x_test, y_test = _cue_trials(n_test, delay, n_cues, slot, cue_length, response, gen)
    return SequenceTask(f"cue-d{delay}", x_train, y_train, x_test, y_test, 2, response)


def japanese_vowels(stretch: int = 1, path: Optional[str] = None) -> SequenceTask:
    r"""UCI's Japanese Vowels: nine speakers saying /ae/, 12 LPC cepstrum channels, 270 train / 370 test.

    The utterances (7-29 frames) are padded with zeros at the *start* to 29 frames, so
    every one ends at the last step, where the network answers (the final 10 % of the
    steps); each channel is standardised with the training frames' statistics (padding
    stays 0). ``stretch=k`` holds each frame for ``k`` steps. Read from the copy shipped
    inside ``sktime`` (no download); raises :class:`TaskUnavailable` without it.

    Example::

        >>> japanese_vowels().x_train.shape                      # doctest: +SKIP
        torch.Size([270, 29, 12])
    """
    _positive(stretch, "stretch")
    try:
        from sktime.datasets import load_japanese_vowels
    except ImportError:
        raise TaskUnavailable(
            "Japanese Vowels needs the sktime package (it ships the data): pip install sktime"
        ) from None
    splits = []
    for split in ("train", "test"):
        X, y = load_japanese_vowels(split=split, return_type="nested_univ")
        series = [np.stack([np.asarray(X.iloc[i, c], dtype=np.float32) for c in range(X.shape[1])], axis=1)
                  for i in range(len(X))]  # each [frames, 12]
        labels = np.asarray(y).astype(int) - 1  # speakers 1..9 -> 0..8
        splits.append((series, labels))
    length = max(len(s) for part, _ in splits for s in part)
    frames = np.concatenate(splits[0][0])
    mean, std = frames.mean(0), frames.std(0) + 1e-6

    def padded(series: list[np.ndarray]) -> Tensor:
        out = np.zeros((len(series), length, series[0].shape[1]), dtype=np.float32)
        for i, s in enumerate(series):
            out[i, length - len(s):] = (s - mean) / std
        x = torch.from_numpy(out)
        return x.repeat_interleave(stretch, dim=1) if stretch > 1 else x

    name = "vowels" if stretch == 1 else f"vowels-x{stretch}"
    T = length * stretch
    return SequenceTask(name, padded(splits[0][0]), torch.from_numpy(splits[0][1]), padded(splits[1][0]),
                        torch.from_numpy(splits[1][1]), 9, readout_window(T))
