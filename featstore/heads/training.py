"""The torch training loop: AdamW, minibatches, early stopping on held-out rows, fixed seeds.

The same seed, data and options give the same weights: the network is built after
`torch.manual_seed(seed)` and minibatch order comes from a generator seeded from it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from featstore.heads.errors import HeadError
from featstore.heads.params import DECLARED

SMALL_WORK = 4_000_000  # rows x width below which one thread beats two (thread start-up)
# rows whose lengths vary (token states) are batched with rows of similar length, drawn from a
# shuffled group of this many batches (as transformers' LengthGroupedSampler does)
LENGTH_GROUP = 50
THREADS_ENV = "FEATSTORE_THREADS"


def pick_threads(work: int) -> int:
    """Torch threads for a training run: $FEATSTORE_THREADS, else one for small problems, else
    the cores not already busy. Oversubscribed OpenMP threads spin: on a loaded 2-core machine
    two threads ran a small MLP 10-25x slower than one."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    if work < SMALL_WORK or cores == 1:
        return 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy + 1))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class TrainOptions:
    """How the loop trains; defaults are the per-text heads' declared ones, with no label
    smoothing unless asked."""

    epochs: int = DECLARED["epochs"].default
    min_steps: int = DECLARED["min_steps"].default
    lr: float = DECLARED["lr"].default
    weight_decay: float = DECLARED["weight_decay"].default
    batch_size: int = DECLARED["batch_size"].default
    patience: int = DECLARED["patience"].default
    label_smoothing: float = 0.0
    seed: int = 0
    # a loss and a validation score (higher is better) other than the task's, for heads that
    # learn something else than classes or values (a similarity: featstore.heads.pair_networks)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    score: Callable[[torch.Tensor, torch.Tensor], float] | None = None


@dataclass
class Inputs:
    """What a network eats: encoder input, extra source blocks, and a token mask if any."""

    enc: torch.Tensor
    sources: list[torch.Tensor] = field(default_factory=list)
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.enc.shape[0])

    def take(self, idx: torch.Tensor | np.ndarray) -> Inputs:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Inputs(self.enc[idx], [s[idx] for s in self.sources],
                      None if self.mask is None else self.mask[idx])

    subset = take

    @property
    def width(self) -> int:
        return int(np.prod(self.enc.shape[1:])) + sum(int(s.shape[1]) for s in self.sources)


class LazyInputs:
    """Rows as gathered (the store's float16), converted to float32 and normalised only when a
    minibatch is taken, so training needs no float32 copy of the whole matrix.

    `parts` are the encoder's rows and each fusion source's, each with its fitted normaliser;
    `join` concatenates the normalised parts into one input (fixed pooling + concat fusion).
    `subset` selects rows by index without copying any.
    """

    def __init__(self, parts: list[np.ndarray], transforms: list[Callable[[np.ndarray],
                 np.ndarray]], join: bool, rows: np.ndarray | None = None) -> None:
        self.parts = parts
        self.transforms = transforms
        self.join = join
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.parts[0])

    @property
    def width(self) -> int:
        return sum(int(np.prod(p.shape[1:])) for p in self.parts)

    def subset(self, idx: torch.Tensor | np.ndarray) -> LazyInputs:
        idx = np.asarray(idx, dtype=np.int64)
        return LazyInputs(self.parts, self.transforms, self.join,
                          idx if self.rows is None else self.rows[idx])

    def _rows(self, idx: torch.Tensor | np.ndarray | slice) -> np.ndarray | slice:
        if not isinstance(idx, slice):
            idx = np.asarray(idx, dtype=np.int64)
        return idx if self.rows is None else self.rows[idx]

    def blocks(self, idx: torch.Tensor | np.ndarray | slice) -> list[np.ndarray]:
        """The normalised float32 parts of the rows `idx` (positions in this view)."""
        rows = self._rows(idx)
        return [t(p[rows]) for p, t in zip(self.parts, self.transforms, strict=True)]

    def take(self, idx: torch.Tensor | np.ndarray | slice) -> Inputs:
        blocks = self.blocks(idx)
        if self.join:
            joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
            return Inputs(torch.from_numpy(np.ascontiguousarray(joined)))
        tensors = [torch.from_numpy(np.ascontiguousarray(b)) for b in blocks]
        return Inputs(tensors[0], tensors[1:])

    def matrix(self, idx: slice | None = None, chunk: int = 65536) -> np.ndarray:
        """One float32 [rows, width] matrix of the joined, normalised parts (what logreg
        needs), filled chunk by chunk: the only float32 copy made."""
        n = len(self) if idx is None else len(range(*idx.indices(len(self))))
        offset = 0 if idx is None else idx.indices(len(self))[0]
        widths = [int(np.prod(p.shape[1:])) for p in self.parts]
        out = np.empty((n, sum(widths)), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            col = 0
            for w, b in zip(widths, self.blocks(slice(offset + start, offset + stop)),
                            strict=True):
                out[start:stop, col:col + w] = b.reshape(len(b), -1)
                col += w
        return out


def as_lazy(x: Inputs | LazyInputs) -> LazyInputs:
    """Rows a logistic regression reads as a matrix; padded token states are not one."""
    if isinstance(x, Inputs):
        raise HeadError("these inputs are token states, not a matrix; attention pooling is "
                        "trained with a torch head")
    return x


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    history: list[float]


def _loss_fn(task: str, smoothing: float) -> nn.Module:
    if task == "regression":
        return nn.MSELoss()
    return nn.CrossEntropyLoss(label_smoothing=smoothing)


@torch.inference_mode()
def forward_all(net: nn.Module, x: Inputs | LazyInputs, batch_size: int = 4096
                ) -> torch.Tensor:
    """Outputs for every row, in eval mode, in row order."""
    net.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        part = x.take(torch.arange(start, min(start + batch_size, len(x))))
        outs.append(net(part.enc, part.sources, part.mask))
    return torch.cat(outs) if outs else torch.empty(0)


def _valid_score(task: str, out: torch.Tensor, y: torch.Tensor) -> float:
    """Higher is better: accuracy (with a tiny loss tie-break), or minus the MSE."""
    if task == "regression":
        return -float(((out[:, 0] - y) ** 2).mean())
    acc = float((out.argmax(1) == y).float().mean())
    return acc - 1e-4 * float(nn.functional.cross_entropy(out, y))


def schedule_epochs(opts: TrainOptions, rows: int) -> int:
    """Epochs a training set of `rows` gets: `epochs`, or more where that is fewer than
    `min_steps` optimizer steps (a small set's few minibatches per epoch would leave a
    network half trained)."""
    per_epoch = math.ceil(rows / max(1, min(opts.batch_size, rows))) if rows else 1
    return max(opts.epochs, math.ceil(opts.min_steps / per_epoch))


def batch_order(n: int, batch: int, gen: torch.Generator,
                lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """One epoch's minibatches: a random permutation cut into batches; with `lengths`, each
    group of LENGTH_GROUP batches is sorted by length before it is cut and the batches are
    shuffled, so a batch is padded to about its own rows' length, not the longest text's."""
    order = torch.randperm(n, generator=gen)
    if lengths is None:
        return [order[s:s + batch] for s in range(0, n, batch)]
    out = []
    group = batch * LENGTH_GROUP
    for start in range(0, n, group):
        chunk = order[start:start + group]
        chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


def train_network(net: nn.Module, task: str, x: Inputs | LazyInputs, y: torch.Tensor,
                  valid: tuple[Inputs | LazyInputs, torch.Tensor] | None, opts: TrainOptions,
                  progress: object | None = None) -> TrainResult:
    """Train `net` in place. With `valid`, keep the weights of the best validation epoch and
    stop after `patience` epochs without improvement; without it, train all `epochs`."""
    loss_fn = _loss_fn(task, opts.label_smoothing)
    n = len(x)
    batch = max(1, min(opts.batch_size, n))
    epochs = schedule_epochs(opts, n)
    optim = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(opts.seed)
    best, best_epoch, best_state, stale = -np.inf, 0, None, 0
    history: list[float] = []
    epoch = 0
    lengths = getattr(x, "lengths", None)  # token rows: batched by length
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in batch_order(n, batch, gen, lengths):
            part = x.take(idx)
            out = net(part.enc, part.sources, part.mask)
            target = y[idx]
            if opts.loss is not None:
                loss = opts.loss(out, target)
            elif task == "regression":
                loss = loss_fn(out[:, 0], target)
            else:
                loss = loss_fn(out, target)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        sched.step()
        if progress is not None:
            progress.update(1)
        if valid is None:
            continue
        out = forward_all(net, valid[0])
        score = opts.score(out, valid[1]) if opts.score is not None else \
            _valid_score(task, out, valid[1])
        history.append(score)
        if score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if stale >= opts.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return TrainResult(best_epoch=best_epoch or epoch, epochs_run=epoch, history=history)


def _net_prefix(i: int) -> str:
    return "net." if i == 0 else f"net{i}."


def networks_state(networks: list[nn.Module]) -> dict[str, np.ndarray]:
    """The networks' weights as named arrays for a head file: `net.`, then `net1.`, ..."""
    return {f"{_net_prefix(i)}{k}": v.detach().cpu().numpy().copy()
            for i, net in enumerate(networks) for k, v in net.state_dict().items()}


def networks_from_state(tensors: dict[str, np.ndarray], count: int,
                        make: Callable[[], nn.Module], name: str) -> list[nn.Module]:
    """`count` networks made by `make` and given the weights `networks_state` wrote; weights
    that do not fit the configuration are one line naming the head."""
    out = []
    for i in range(count):
        prefix = _net_prefix(i)
        net = make()
        state = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                 if k.startswith(prefix)}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise HeadError(f"head {name}: weights do not fit its configuration "
                            f"({str(exc).splitlines()[0]})") from None
        out.append(net.eval())
    return out
