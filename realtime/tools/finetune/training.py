"""The training loop shared by every base: optimiser, schedule, validation, best epoch, device.

A backend describes itself as a :class:`_Learner` (its modules, parameter groups, batches
and forward pass); :func:`_fit` trains it and keeps the best epoch.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from realtime.accel.device import DeviceError, resolve_device
from realtime.core.errors import ConfigError
from realtime.tools.finetune.options import EvalResult, FineTuneOptions

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- training loop


@dataclass
class _Learner:
    """What the shared loop needs from a backend."""

    modules: list[nn.Module]                                  # set to train()/eval()
    param_groups: list[dict[str, Any]]                        # for the optimiser
    train_batches: Callable[[int], Iterable[tuple[Any, torch.Tensor]]]   # epoch -> (x, y)
    steps_per_epoch: int
    forward: Callable[[Any], torch.Tensor]                    # x -> logits
    val_batches: Optional[Callable[[], Iterable[tuple[Any, torch.Tensor, torch.Tensor]]]]  # (x, y, clip)
    state: Callable[[], dict[str, torch.Tensor]]
    restore: Callable[[dict[str, torch.Tensor]], None]
    frozen_eval: list[nn.Module] = field(default_factory=list)  # kept in eval() while training
    penalty: Optional[Callable[[], torch.Tensor]] = None       # added to the loss (e.g. an L2 term)


def _evaluate(learner: _Learner, num_classes: int) -> Optional[EvalResult]:
    if learner.val_batches is None:
        return None
    for m in learner.modules:
        m.eval()
    losses, correct, count = 0.0, 0, 0
    clip_probs: dict[int, torch.Tensor] = {}
    clip_label: dict[int, int] = {}
    with torch.no_grad():
        for x, y, clip in learner.val_batches():
            logits = learner.forward(x).float().cpu()
            losses += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
            probs = logits.softmax(1)
            for p, label, c in zip(probs, y.tolist(), clip.tolist()):
                clip_probs[c] = clip_probs.get(c, torch.zeros_like(p)) + p
                clip_label[c] = label
    if count == 0:
        return None
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for c, p in clip_probs.items():
        confusion[clip_label[c]][int(p.argmax())] += 1
    clip_correct = sum(confusion[i][i] for i in range(num_classes))
    return EvalResult(losses / count, correct / count, clip_correct / max(1, len(clip_probs)), confusion)


def _fit(learner: _Learner, opts: FineTuneOptions, num_classes: int,
         device: torch.device) -> tuple[int, int, Optional[EvalResult], list[dict[str, float]]]:
    """Train with AdamW (warm-up then cosine decay), keep the best epoch by validation
    accuracy (clips, then windows; a tie goes to the later, longer-trained epoch: with a
    handful of validation clips the accuracy saturates early, and the validation loss is
    too noisy to pick an epoch), stop after ``opts.patience`` epochs below the best (Ctrl-C
    stops too, keeping the best so far). Returns (best_epoch, epochs_run, best_eval, history)."""
    optimizer = torch.optim.AdamW(learner.param_groups, weight_decay=opts.weight_decay)
    total = max(1, opts.epochs * learner.steps_per_epoch)
    warmup = min(learner.steps_per_epoch, total // 10 + 1)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history: list[dict[str, float]] = []
    best_key: Optional[tuple[float, ...]] = None
    best_eval: Optional[EvalResult] = None
    best_state: Optional[dict[str, torch.Tensor]] = None
    best_epoch, stale, epoch = 0, 0, 0
    bar = tqdm(total=opts.epochs, desc="training", unit="epoch", file=sys.stderr, disable=not opts.progress,
               dynamic_ncols=True)
    try:
        for epoch in range(1, opts.epochs + 1):
            for m in learner.modules:
                m.train()
            for m in learner.frozen_eval:
                m.eval()
            loss_sum, correct, seen = 0.0, 0, 0
            steps = tqdm(learner.train_batches(epoch), total=learner.steps_per_epoch, desc=f"epoch {epoch}",
                         unit="batch", file=sys.stderr, leave=False, disable=not opts.progress,
                         dynamic_ncols=True)
            for x, y in steps:
                y = y.to(device)
                logits = learner.forward(x).float()
                loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
                total_loss = loss if learner.penalty is None else loss + learner.penalty()
                optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                steps.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.2f}")
            row = {"epoch": epoch, "loss": round(loss_sum / max(1, seen), 4),
                   "accuracy": round(correct / max(1, seen), 4)}
            ev = _evaluate(learner, num_classes)
            if ev is not None:
                row.update(val_loss=round(ev.loss, 4), val_accuracy=round(ev.clip_accuracy, 4),
                           val_window_accuracy=round(ev.window_accuracy, 4))
            history.append(row)
            key = ev.key() if ev is not None else (float(epoch),)   # no validation: the last epoch
            if best_key is None or key >= best_key:
                best_key, best_eval, best_epoch, stale = key, ev, epoch, 0
                best_state = {k: v.detach().clone() for k, v in learner.state().items()}
            else:
                stale += 1
            logger.info("epoch %d: loss %.3f, accuracy %.3f%s", epoch, row["loss"], row["accuracy"],
                        "" if ev is None else f"; validation loss {ev.loss:.3f}, accuracy {ev.clip_accuracy:.3f} "
                        f"(windows {ev.window_accuracy:.3f})" + (" *" if best_epoch == epoch else ""))
            bar.set_postfix(loss=row["loss"], acc=row["accuracy"],
                            **({} if ev is None else {"val_acc": f"{ev.clip_accuracy:.3f}",
                                                      "best": f"{best_key[0]:.3f}@{best_epoch}"}))
            bar.update(1)
            if ev is not None and stale >= opts.patience:
                logger.info("%d epochs below the best: stopping early (best: epoch %d)", stale, best_epoch)
                break
    except KeyboardInterrupt:
        if best_state is None:
            raise
        logger.warning("interrupted: keeping the best epoch so far (%d)", best_epoch)
    finally:
        bar.close()
    if best_state is not None:
        learner.restore(best_state)
    for m in learner.modules:
        m.eval()
    return best_epoch, epoch, best_eval, history


def _batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


# --------------------------------------------------------------------------- device


def _device(name: str) -> torch.device:
    """``--device``, by the one rule (:func:`realtime.accel.device.resolve_device`)."""
    try:
        return resolve_device(name)
    except DeviceError as exc:
        raise ConfigError(f"--device {name}: {exc}") from exc
