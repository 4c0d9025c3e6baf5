"""The offline advisor: fixed, deterministic rules over a run's context.

Used without an API key, with ``--offline``, or when the autopilot is told to
use the rules. It reads the same ``RunContext`` as Claude and answers in the
same shape (an ``Advice``), so the dashboard, ``tiller suggest`` and the
autopilot treat both alike. The same context always gives the same advice.

Each rule is a small function ``rule(ctx) -> Finding | None``: one Markdown
line citing the numbers, and the suggestions it makes (each with the config's
current value and a reason citing the numbers). ``RuleAdvisor.advise`` runs the
rules in priority order; the first rule to suggest a parameter wins it, and at
most ``MAX_SUGGESTIONS`` are kept. Priority:

1. ``divergence`` (a NaN or exploding loss): lower lr, clip gradients. While it
   fires, ``plateau`` and ``underfitting`` stay silent, so nothing raises the lr
   or lengthens a run that is blowing up.
2. ``class_recall``: a class far behind the rest -> class weights / oversampling.
3. ``effective_batch``: too few optimizer steps per epoch -> less accumulation.
4. ``plateau``, ``overfitting``, ``underfitting`` (mutually exclusive by design:
   a plateau is neither overfitting nor a stalled, poorly fitting model).

A run whose own training loop reads only some hot keys (``ctx.hot_keys``) gets
no suggestion for the others: its finding says which it left out.

The rules cannot read free text: a question gets an honest line saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import median
from typing import Any, Callable

from tiller.trainer.advisor.context import RunContext
from tiller.trainer.advisor.types import Advice, Suggestion
from tiller.trainer.steering.config import TrainConfig, key_bounds

NAME = "offline rules"

# At most this many suggestions: the LLM advisor is asked for "at most four", and a few
# decisive changes are easier to judge afterwards than many small ones.
MAX_SUGGESTIONS = 4

# Trend rules compare the latest epoch with the one this many epochs earlier, so they need
# TREND_WINDOW + 1 epochs; three epochs smooth over one noisy epoch without waiting long.
TREND_WINDOW = 3

# --- divergence
# A loss at more than twice its best is no longer noise: the run is blowing up.
DIVERGENCE_RATIO = 2.0
# ... and rises by more than 0.1 nats: a loss that climbs from 1e-6 to 0.04 is twice its best
# many times over, yet the model still fits; cross-entropy moves of under 0.1 are not blow-ups.
DIVERGENCE_MIN_RISE = 0.1
# A tenfold cut is the usual first response to divergence (and the autopilot's default
# largest lr step, so it can apply it in one go).
DIVERGENCE_LR_DIVISOR = 10.0

# --- plateau
# Epochs without a real improvement of the val loss before calling it a plateau; the same
# as ReduceLROnPlateau's default patience here (plateau_patience = 3).
PLATEAU_EPOCHS = 3
# An improvement smaller than 1 % of the best val loss is noise, not progress.
PLATEAU_MARGIN = 0.01
# Cut the lr to about a third: between ReduceLROnPlateau's usual 0.5 and StepLR's 0.1,
# big enough to show an effect within a few epochs.
PLATEAU_LR_FACTOR = 0.3

# --- overfitting
# Train accuracy more than 8 points above val accuracy is a real generalisation gap for
# the small classification runs Tiller trains (a healthy run stays within a few points).
OVERFIT_GAP = 0.08
# ... and it counts as growing when it widened by 2 points or more over TREND_WINDOW epochs.
GAP_GROWTH = 0.02
# Val loss 5 % above its best (reached at least two epochs ago) is rising, not wobbling ...
VAL_RISE = 0.05
# ... when train loss fell by at least 2 % over the same epochs.
TRAIN_FALL = 0.02
# Dropout goes up in steps of 0.1 and no higher than 0.5, beyond which most models underfit.
DROPOUT_STEP = 0.1
MAX_DROPOUT = 0.5
# Weight decay starts at 1e-4 (a mild L2 for Adam) and then grows tenfold per suggestion,
# never beyond 0.1: the schema allows up to 1.0, but more than 0.1 shrinks most weights
# faster than the data can hold them up.
FIRST_WEIGHT_DECAY = 1e-4
WEIGHT_DECAY_FACTOR = 10.0
MAX_WEIGHT_DECAY = 0.1
# Of the regularisers, at most two per advice: one change at a time is easier to judge.
MAX_REGULARISERS = 2

# --- underfitting
# A model fitting less than three quarters of its own training data has room to fit more.
UNDERFIT_TRAIN_ACC = 0.75
# Train loss improving by less than 2 % over TREND_WINDOW epochs has stalled; 2 % or more
# (with a falling val loss) is still learning.
STALL_IMPROVEMENT = 0.02
# A stalled, poorly fitting model gets a threefold lr: a clear step, a third of a decade.
UNDERFIT_LR_FACTOR = 3.0
# ... but never above these: Adam/AdamW beyond 0.01 tends to diverge on the models Tiller
# trains; SGD tolerates much larger steps.
MAX_RAISED_LR = {"Adam": 0.01, "AdamW": 0.01, "SGD": 1.0}
# A run still learning within this many epochs of its end is worth extending ...
NEAR_END_EPOCHS = 1
# ... by half again its length.
LONGER_RUN_FACTOR = 1.5

# --- class recall
# A class whose recall is 0.3 below the median of the other classes is being neglected.
RECALL_GAP = 0.3
# Recall from fewer than 5 validation samples moves in steps of 0.2 or more: too coarse.
MIN_CLASS_VAL_SAMPLES = 5
# The first epoch's recall mostly shows which classes the model happened to learn first.
MIN_RECALL_EPOCHS = 2
# Balanced weights and oversampling only act on classes rarer than the rest: a weak class with
# at least 0.8 x the median training count of the others would weigh about 1.0 anyway.
RARE_CLASS_SHARE = 0.8
# Manual class weights of weak classes are doubled (within the schema's 1000).
CLASS_WEIGHT_FACTOR = 2.0
MAX_CLASS_WEIGHT = 1000.0

# --- effective batch
# Fewer than 20 optimizer steps per epoch leaves too few updates to learn from a small data
# set (seed 003: batch 32 x accumulation 4 = 128 on a small set; an LLM advisor cut it to 1).
MIN_STEPS_PER_EPOCH = 20

TEXT_MODELS = ("text_embedding_bag",)
FLAT_MODELS = ("mlp",)
TEXT_DATASETS = ("text_csv", "imdb_npz")
TEN_CLASS_DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class Finding:
    rule: str
    text: str  # one Markdown line, citing the numbers
    suggestions: tuple[Suggestion, ...] = ()


Rule = Callable[[RunContext], "Finding | None"]


# ------------------------------------------------------------------ helpers


def _cfg(ctx: RunContext, key: str) -> Any:
    if key in ctx.config:
        return ctx.config[key]
    return TrainConfig.model_fields[key].get_default(call_default_factory=True)


def _suggest(ctx: RunContext, key: str, value: Any, reason: str) -> Suggestion:
    return Suggestion(parameter=key, current_value=_cfg(ctx, key), suggested_value=value, reason=reason)


def _only_steered(ctx: RunContext, finding: Finding) -> Finding:
    """``finding`` without the suggestions for keys the run's loop does not read, saying which."""
    left_out = [s.parameter for s in finding.suggestions if not ctx.steers(s.parameter)]
    if not left_out:
        return finding
    it = "it" if len(left_out) == 1 else "them"
    return replace(finding,
                   text=f"{finding.text} This run's training loop does not read {', '.join(left_out)}, so the "
                        f"rules suggest no change to {it}.",
                   suggestions=tuple(s for s in finding.suggestions if ctx.steers(s.parameter)))


def _round3(x: float) -> float:
    """Three significant digits, as a float (readable, and still the key's JSON type)."""
    return float(f"{x:.3g}")


def _num(x: float | None) -> str:
    return "missing" if x is None else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _points(x: float) -> str:
    return f"{100 * x:.1f} points"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _points_of(ctx: RunContext, key: str) -> list[tuple[int, float]]:
    """``(epoch, value)`` for every epoch whose ``key`` is a finite number."""
    return [(int(row["epoch"]), float(row[key])) for row in ctx.history if _finite(row.get(key))]


def _latest(ctx: RunContext, key: str) -> float | None:
    value = ctx.history[-1].get(key) if ctx.history else None
    return float(value) if _finite(value) else None


def _at(ctx: RunContext, key: str, epoch: int) -> float | None:
    for row in ctx.history:
        if int(row["epoch"]) == epoch and _finite(row.get(key)):
            return float(row[key])
    return None


def _gaps(ctx: RunContext) -> list[tuple[int, float]]:
    """``(epoch, train accuracy - val accuracy)`` where both are known."""
    return [(int(row["epoch"]), float(row["train/accuracy"]) - float(row["val/accuracy"]))
            for row in ctx.history if _finite(row.get("train/accuracy")) and _finite(row.get("val/accuracy"))]


def _augments_well(ctx: RunContext) -> bool:
    """Seed 002's rotations, flips and zoom suit a convolutional image model, not the flat MLP
    (on 8x8 digits they make epochs ~20x slower and the accuracy collapses) nor text."""
    return not _is_text(ctx) and _cfg(ctx, "model_name") not in FLAT_MODELS


def _is_text(ctx: RunContext) -> bool:
    return (_cfg(ctx, "model_name") in TEXT_MODELS or _cfg(ctx, "dataset") in TEXT_DATASETS
            or ctx.model in TEXT_MODELS or ctx.dataset in TEXT_DATASETS)


def _num_classes(ctx: RunContext) -> int | None:
    if ctx.classes is not None:
        return len(ctx.classes.names)
    if _is_text(ctx):
        return 2  # text_embedding_bag trains binary classifiers only
    if ctx.dataset in TEN_CLASS_DATASETS:
        return 10
    return None


def _lr_floor(ctx: RunContext) -> float:
    return float(_cfg(ctx, "min_lr")) if _cfg(ctx, "min_lr_enabled") else 0.0


def _lowered_lr(ctx: RunContext, target: float) -> float | None:
    """``target`` rounded and kept at or above min_lr; None if that is no lower than now."""
    value = max(_round3(target), _lr_floor(ctx))
    return value if value < _cfg(ctx, "learning_rate") else None


def _steps_per_epoch(samples: int, batch: int, accumulation: int) -> int:
    """Optimizer steps per epoch, as the trainer counts them (a short last group still steps)."""
    return math.ceil(math.ceil(samples / batch) / accumulation)


def _accumulation(ctx: RunContext) -> int:
    return int(_cfg(ctx, "gradient_accumulation_steps")) if _cfg(ctx, "gradient_accumulation_enabled") else 1


def _in_warmup(ctx: RunContext) -> bool:
    """Whether the lr is still ramping up (then a low lr is no reason to raise it)."""
    if not _cfg(ctx, "warmup_enabled"):
        return False
    steps = int(_cfg(ctx, "warmup_steps"))
    if steps > 0:
        if not ctx.train_size:
            return False
        per_epoch = _steps_per_epoch(ctx.train_size, int(_cfg(ctx, "batch_size")), _accumulation(ctx))
        return ctx.epochs_done < steps / max(per_epoch, 1)
    return ctx.epochs_done < float(_cfg(ctx, "warmup_ratio")) * int(_cfg(ctx, "num_epochs"))


# ------------------------------------------------------------------ evidence
# Shared by the rules, so that each can tell whether another one explains the run better.


def _divergence_evidence(ctx: RunContext) -> str | None:
    if not ctx.history:
        return None
    last = ctx.history[-1]
    epoch = int(last["epoch"])
    for key, label in (("train/loss", "train loss"), ("val/loss", "val loss")):
        value = last.get(key)
        if value is None and any(key in row for row in ctx.history[:-1]):
            return f"the {label} of epoch {epoch} is not a number (a NaN is stored as no value)"
        if value is not None and not _finite(value):
            return f"the {label} of epoch {epoch} is {value}"
    train = _points_of(ctx, "train/loss")
    if len(train) >= 2 and train[-1][0] == epoch:
        best_epoch, best = min(train, key=lambda p: p[1])
        if best > 0 and train[-1][1] > DIVERGENCE_RATIO * best and train[-1][1] - best > DIVERGENCE_MIN_RISE:
            return (f"train loss is {_num(train[-1][1])} in epoch {epoch}, {train[-1][1] / best:.1f}x its best "
                    f"{_num(best)} (epoch {best_epoch})")
    val = _points_of(ctx, "val/loss")
    if len(val) >= 2 and val[-1][0] == epoch:
        best_epoch, best = min(val, key=lambda p: p[1])
        # A val loss far above its best while the train loss keeps reaching new lows is
        # overfitting (the overfitting rule's case), not divergence.
        train_now = _latest(ctx, "train/loss")
        train_best = min((v for _, v in train), default=None)
        train_falling = train_now is not None and train_best is not None and train_now <= train_best * (
            1 + PLATEAU_MARGIN)
        if (best > 0 and val[-1][1] > DIVERGENCE_RATIO * best and val[-1][1] - best > DIVERGENCE_MIN_RISE
                and not train_falling):
            return (f"val loss is {_num(val[-1][1])} in epoch {epoch}, {val[-1][1] / best:.1f}x its best "
                    f"{_num(best)} (epoch {best_epoch}), and train loss is not improving either")
    return None


def _overfit_evidence(ctx: RunContext) -> str | None:
    gaps = _gaps(ctx)
    if len(gaps) > TREND_WINDOW and gaps[-1][0] == ctx.epochs_done:
        (then_epoch, then), (_, now) = gaps[-1 - TREND_WINDOW], gaps[-1]
        if now > OVERFIT_GAP and now - then >= GAP_GROWTH:
            return (f"train accuracy {_pct(_latest(ctx, 'train/accuracy'))} vs val accuracy "
                    f"{_pct(_latest(ctx, 'val/accuracy'))}: a gap of {_points(now)}, up from "
                    f"{_points(then)} at epoch {then_epoch}")
    val = _points_of(ctx, "val/loss")
    if len(val) >= 3 and val[-1][0] == ctx.epochs_done:
        best_epoch, best = min(val, key=lambda p: p[1])
        now = val[-1][1]
        train_then, train_now = _at(ctx, "train/loss", best_epoch), _latest(ctx, "train/loss")
        if (ctx.epochs_done - best_epoch >= 2 and now > best * (1 + VAL_RISE) and train_then is not None
                and train_now is not None and train_now < train_then * (1 - TRAIN_FALL)):
            return (f"val loss rose from {_num(best)} (epoch {best_epoch}) to {_num(now)} while train loss fell "
                    f"from {_num(train_then)} to {_num(train_now)}")
    return None


def _relative_improvement(points: list[tuple[int, float]]) -> float | None:
    """How much the value fell over the last TREND_WINDOW epochs, as a share of where it was."""
    if len(points) <= TREND_WINDOW:
        return None
    then, now = points[-1 - TREND_WINDOW][1], points[-1][1]
    return (then - now) / then if then > 0 else None


def _stalled_underfit_evidence(ctx: RunContext) -> str | None:
    accuracy = _latest(ctx, "train/accuracy")
    train = _points_of(ctx, "train/loss")
    improvement = _relative_improvement(train)
    if accuracy is None or improvement is None or train[-1][0] != ctx.epochs_done:
        return None
    gaps = _gaps(ctx)
    if gaps and gaps[-1][1] > OVERFIT_GAP:
        return None
    if accuracy < UNDERFIT_TRAIN_ACC and improvement < STALL_IMPROVEMENT:
        return (f"train accuracy is only {_pct(accuracy)} and train loss improved by {100 * improvement:.1f} % "
                f"over the last {TREND_WINDOW} epochs ({_num(train[-1 - TREND_WINDOW][1])} -> "
                f"{_num(train[-1][1])})")
    return None


# ------------------------------------------------------------------ rules


def divergence(ctx: RunContext) -> Finding | None:
    """A non-finite loss now, or a loss at more than DIVERGENCE_RATIO x its best: lower lr, clip."""
    evidence = _divergence_evidence(ctx)
    if evidence is None:
        return None
    suggestions = []
    lr = _cfg(ctx, "learning_rate")
    new_lr = _lowered_lr(ctx, lr / DIVERGENCE_LR_DIVISOR)
    if new_lr is not None:
        suggestions.append(_suggest(ctx, "learning_rate", new_lr,
                                    f"{evidence}: a {DIVERGENCE_LR_DIVISOR:g}x smaller lr ({_num(lr)} -> "
                                    f"{_num(new_lr)}) takes steps small enough to stay stable."))
    if not _cfg(ctx, "gradient_clipping"):
        limit = _cfg(ctx, "gradient_clipping_value")
        suggestions.append(_suggest(ctx, "gradient_clipping", True,
                                    f"{evidence}: clipping the gradient norm at {_num(limit)} keeps one bad "
                                    "batch from throwing the weights far off."))
    text = (f"**Divergence**: {evidence}. If the weights themselves have become NaN, resume from the best "
            "checkpoint rather than continuing.")
    return Finding("divergence", text, tuple(suggestions))


def class_recall(ctx: RunContext) -> Finding | None:
    """A class whose recall is RECALL_GAP below the median of the others: weights or oversampling."""
    stats = ctx.classes
    if stats is None or ctx.epochs_done < MIN_RECALL_EPOCHS:
        return None
    eligible = [(i, float(r)) for i, r in enumerate(stats.recall)
                if r is not None and _finite(r) and i < len(stats.val_counts)
                and stats.val_counts[i] >= MIN_CLASS_VAL_SAMPLES]
    if len(eligible) < 2:
        return None
    weak = []
    for i, recall in eligible:
        others = median(r for j, r in eligible if j != i)
        if recall < others - RECALL_GAP:
            weak.append((i, recall, others))
    if not weak:
        return None
    base = "; ".join(_describe_weak_class(ctx, i, recall, others) for i, recall, others in weak)
    names = ", ".join(stats.names[i] for i, _, _ in weak)

    use, strategy = _cfg(ctx, "use_class_weights"), _cfg(ctx, "weight_strategy")
    weights = dict(_cfg(ctx, "class_weights") or {})
    manual_set = any(w != 1.0 for w in weights.values())
    suggestions = []
    if strategy != "manual" and not any(_is_rare(stats, i) for i, _, _ in weak):
        return Finding("class_recall", f"**Weak class**: {base}. It is not rarer than the others in training, "
                                       "so balanced weights or oversampling would change little; more epochs, "
                                       "more capacity or more distinct samples of it help more.", ())
    if not use:
        suggestions.append(_suggest(ctx, "use_class_weights", True,
                                    f"{base}: class weighting makes the neglected class count as much as the "
                                    "others in training."))
    if strategy == "manual" and not manual_set:
        suggestions.append(_suggest(ctx, "weight_strategy", "balanced",
                                    f"{base}: the manual strategy has no weights other than 1.0; balanced weights "
                                    "each class inversely to its size."))
    elif use and strategy == "balanced":
        suggestions.append(_suggest(ctx, "weight_strategy", "oversample",
                                    f"{base} although balanced loss weights are on: oversampling shows the model "
                                    "the weak class more often instead."))
    elif use and strategy == "manual":
        raised = {name: weights.get(name, 1.0) for name in weights}
        for i, _, _ in weak:
            name = stats.names[i]
            raised[name] = min(MAX_CLASS_WEIGHT, _round3(float(weights.get(name, 1.0)) * CLASS_WEIGHT_FACTOR))
        if raised != weights:
            suggestions.append(_suggest(ctx, "class_weights", raised,
                                        f"{base}: doubling the manual weight of {names} makes its errors cost "
                                        "more."))
    text = f"**Weak class**: {base}."
    if not suggestions:
        text += (" Class weighting is already as strong as the rules make it; more or cleaner samples of this "
                 "class are the next lever.")
    return Finding("class_recall", text, tuple(suggestions))


def _is_rare(stats, i: int) -> bool:
    """Fewer training samples than RARE_CLASS_SHARE of the others' median (unknown counts: assume so)."""
    counts = stats.train_counts
    if counts is None or i >= len(counts):
        return True
    others = [c for j, c in enumerate(counts) if j != i]
    return bool(others) and counts[i] < RARE_CLASS_SHARE * median(others)


def _describe_weak_class(ctx: RunContext, i: int, recall: float, others: float) -> str:
    stats = ctx.classes
    assert stats is not None
    counts = [f"{stats.val_counts[i]} validation"]
    if stats.train_counts is not None and i < len(stats.train_counts):
        counts.append(f"{stats.train_counts[i]} training")
    detail = " and ".join(counts) + " samples"
    row = stats.confusion[i] if i < len(stats.confusion) else []
    mistaken = [(count, j) for j, count in enumerate(row) if j != i and count > 0]
    if mistaken:
        count, j = max(mistaken, key=lambda p: (p[0], -p[1]))
        detail += f"; most often taken for {stats.names[j]}, {count} times"
    return f"{stats.names[i]} has recall {recall:.2f} vs a median of {others:.2f} for the other classes ({detail})"


def effective_batch(ctx: RunContext) -> Finding | None:
    """Fewer than MIN_STEPS_PER_EPOCH optimizer steps per epoch: less accumulation, or a smaller batch."""
    samples = ctx.train_size
    if not samples:
        return None
    batch, accumulation = int(_cfg(ctx, "batch_size")), _accumulation(ctx)
    steps = _steps_per_epoch(samples, batch, accumulation)
    if steps >= MIN_STEPS_PER_EPOCH:
        return None
    evidence = (f"an effective batch of {batch * accumulation} (batch {batch} x accumulation {accumulation}) gives "
                f"only {steps} optimizer step{'' if steps == 1 else 's'} per epoch on {samples} training samples")
    suggestions = []
    new_accumulation = accumulation
    if accumulation > 1:
        new_accumulation = next((a for a in range(accumulation - 1, 0, -1)
                                 if _steps_per_epoch(samples, batch, a) >= MIN_STEPS_PER_EPOCH), 1)
        suggestions.append(_suggest(
            ctx, "gradient_accumulation_steps", new_accumulation,
            f"{evidence}; accumulation {new_accumulation} gives "
            f"{_steps_per_epoch(samples, batch, new_accumulation)} steps per epoch."))
        if not ctx.steers("gradient_accumulation_steps"):
            new_accumulation = accumulation  # it stays, so the batch alone must give the steps
    if _steps_per_epoch(samples, batch, new_accumulation) < MIN_STEPS_PER_EPOCH and batch > 1:
        new_batch = 1
        while (new_batch * 2 < batch
               and _steps_per_epoch(samples, new_batch * 2, new_accumulation) >= MIN_STEPS_PER_EPOCH):
            new_batch *= 2
        kept = "without" if new_accumulation == 1 else f"with accumulation {new_accumulation}, which stays,"
        suggestions.append(_suggest(
            ctx, "batch_size", new_batch,
            f"{evidence}; even {kept} batch {batch} is too large for the data set, and batch "
            f"{new_batch} gives {_steps_per_epoch(samples, new_batch, new_accumulation)} steps per epoch."))
    text = f"**Effective batch too large**: {evidence} (fewer than {MIN_STEPS_PER_EPOCH})."
    return Finding("effective_batch", text, tuple(suggestions))


def plateau(ctx: RunContext) -> Finding | None:
    """Val loss not better than its best by PLATEAU_MARGIN for PLATEAU_EPOCHS epochs: lower lr."""
    if _divergence_evidence(ctx) or _overfit_evidence(ctx) or _stalled_underfit_evidence(ctx):
        return None  # those rules explain the run better
    val = _points_of(ctx, "val/loss")
    if len(val) <= PLATEAU_EPOCHS or val[-1][0] != ctx.epochs_done:
        return None
    best_epoch, best = val[0]
    for epoch, value in val[1:]:
        if value < best * (1 - PLATEAU_MARGIN):
            best_epoch, best = epoch, value
    since = ctx.epochs_done - best_epoch
    if since < PLATEAU_EPOCHS:
        return None
    evidence = (f"val loss has not improved on {_num(best)} (epoch {best_epoch}) by more than "
                f"{100 * PLATEAU_MARGIN:g} % for {since} epochs (latest {_num(val[-1][1])})")
    if _cfg(ctx, "lr_scheduler") == "ReduceLROnPlateau":
        return Finding("plateau", f"**Plateau**: {evidence}. The ReduceLROnPlateau scheduler (patience "
                                  f"{_cfg(ctx, 'plateau_patience')}, factor {_cfg(ctx, 'plateau_factor')}) "
                                  "already cuts the lr on a plateau, so no lr change is suggested.")
    lr = _cfg(ctx, "learning_rate")
    new_lr = _lowered_lr(ctx, lr * PLATEAU_LR_FACTOR)
    if new_lr is None:
        return Finding("plateau", f"**Plateau**: {evidence}. The lr {_num(lr)} is already at its floor "
                                  f"(min_lr {_num(_lr_floor(ctx))}), so the rules suggest no lower lr.")
    suggestion = _suggest(ctx, "learning_rate", new_lr,
                          f"{evidence}: a smaller lr ({_num(lr)} -> {_num(new_lr)}) lets the model settle "
                          "into the minimum it keeps stepping over.")
    return Finding("plateau", f"**Plateau**: {evidence}.", (suggestion,))


def overfitting(ctx: RunContext) -> Finding | None:
    """A growing train/val gap, or val loss rising while train loss falls: more regularisation.

    Candidates in this order, the first MAX_REGULARISERS that apply: augmentation (image
    models only; usually the strongest cure for one), weight decay (acts on every
    model), dropout (acts only where the model has dropout layers), label smoothing (more
    than two classes; for two, it mostly blurs the one decision).
    """
    evidence = _overfit_evidence(ctx)
    if evidence is None:
        return None
    candidates: list[Suggestion] = []
    if _augments_well(ctx) and not _cfg(ctx, "use_augmentation"):
        candidates.append(_suggest(ctx, "use_augmentation", True,
                                   f"{evidence}: random rotations, flips, shifts and zoom show the model new "
                                   "variants of each training image."))
    decay = float(_cfg(ctx, "weight_decay"))
    new_decay = FIRST_WEIGHT_DECAY if decay <= 0 else min(_round3(decay * WEIGHT_DECAY_FACTOR), MAX_WEIGHT_DECAY)
    upper = key_bounds("weight_decay").get("le", MAX_WEIGHT_DECAY)
    new_decay = min(new_decay, upper)
    if new_decay > decay:
        candidates.append(_suggest(ctx, "weight_decay", new_decay,
                                   f"{evidence}: weight decay {_num(decay)} -> {_num(new_decay)} penalises the "
                                   "large weights that memorise the training set."))
    dropout = float(_cfg(ctx, "dropout_rate"))
    new_dropout = min(_round3(dropout + DROPOUT_STEP), MAX_DROPOUT)
    if new_dropout > dropout:
        candidates.append(_suggest(ctx, "dropout_rate", new_dropout,
                                   f"{evidence}: dropout {_num(dropout)} -> {_num(new_dropout)} keeps the model "
                                   "from relying on single features."))
    classes = _num_classes(ctx)
    if classes is not None and classes > 2 and not _cfg(ctx, "label_smoothing_enabled"):
        candidates.append(_suggest(ctx, "label_smoothing_enabled", True,
                                   f"{evidence}: label smoothing ({_cfg(ctx, 'label_smoothing'):g}) stops the "
                                   f"model from pushing its {classes}-class predictions to full confidence."))
    text = f"**Overfitting**: {evidence}."
    if not candidates:
        text += " Every regulariser the rules know is already at its limit."
    # Keys the run does not steer are left out before the cap, so they take no regulariser's place.
    finding = _only_steered(ctx, Finding("overfitting", text, tuple(candidates)))
    return replace(finding, suggestions=finding.suggestions[:MAX_REGULARISERS])


def underfitting(ctx: RunContext) -> Finding | None:
    """A stalled, poorly fitting model: higher lr. A model still learning at the end: a longer run."""
    if _divergence_evidence(ctx):
        return None  # never raise the lr or lengthen a run that is blowing up
    stalled = _stalled_underfit_evidence(ctx)
    if stalled is not None:
        lr, optimizer = _cfg(ctx, "learning_rate"), _cfg(ctx, "optimizer")
        if _in_warmup(ctx):
            return Finding("underfitting", f"**Underfitting**: {stalled}; the lr is still warming up, so the "
                                           "rules wait before raising it.")
        ceiling = min(MAX_RAISED_LR.get(optimizer, 0.01), key_bounds("learning_rate").get("le", 10.0))
        new_lr = min(_round3(lr * UNDERFIT_LR_FACTOR), ceiling)
        if new_lr <= lr:
            return Finding("underfitting", f"**Underfitting**: {stalled}. The lr {_num(lr)} is already at the "
                                           f"rules' ceiling for {optimizer} ({_num(ceiling)}); a larger model or "
                                           "a longer run may help.")
        suggestion = _suggest(ctx, "learning_rate", new_lr,
                              f"{stalled}: a {UNDERFIT_LR_FACTOR:g}x larger lr ({_num(lr)} -> {_num(new_lr)}) "
                              "gets the model moving again.")
        return Finding("underfitting", f"**Underfitting**: {stalled}.", (suggestion,))

    num_epochs = int(_cfg(ctx, "num_epochs"))
    if num_epochs - ctx.epochs_done > NEAR_END_EPOCHS or _overfit_evidence(ctx):
        return None
    train_gain = _relative_improvement(_points_of(ctx, "train/loss"))
    val = _points_of(ctx, "val/loss")
    val_gain = _relative_improvement(val)
    if train_gain is None or val_gain is None or val[-1][0] != ctx.epochs_done:
        return None
    if train_gain < STALL_IMPROVEMENT or val_gain < STALL_IMPROVEMENT or val[-1][1] > min(v for _, v in val):
        return None
    evidence = (f"epoch {ctx.epochs_done} of {num_epochs} and still learning: over the last {TREND_WINDOW} epochs "
                f"train loss fell {100 * train_gain:.1f} % and val loss {100 * val_gain:.1f} % to a new best "
                f"{_num(val[-1][1])}")
    new_epochs = max(ctx.epochs_done + 1, int(round(num_epochs * LONGER_RUN_FACTOR)))
    new_epochs = min(new_epochs, int(key_bounds("num_epochs").get("le", new_epochs)))
    if new_epochs <= num_epochs:
        return Finding("underfitting", f"**Still learning**: {evidence}.")
    suggestion = _suggest(ctx, "num_epochs", new_epochs,
                          f"{evidence}: {new_epochs} epochs instead of {num_epochs} let it keep improving.")
    return Finding("underfitting", f"**Still learning**: {evidence}.", (suggestion,))


RULES: tuple[Rule, ...] = (divergence, class_recall, effective_batch, plateau, overfitting, underfitting)


# ------------------------------------------------------------------ advisor


def _latest_line(ctx: RunContext) -> str:
    labels = (("train/loss", "train loss", _num), ("val/loss", "val loss", _num),
              ("train/accuracy", "train accuracy", _pct), ("val/accuracy", "val accuracy", _pct),
              ("lr", "lr", _num))
    last = ctx.history[-1] if ctx.history else {}
    parts = []
    for key, label, fmt in labels:
        value = last.get(key)
        if value is not None:
            parts.append(f"{label} {fmt(value) if _finite(value) else value}")
    return (f"**Latest** (epoch {ctx.epochs_done} of {_cfg(ctx, 'num_epochs')}): "
            + (", ".join(parts) if parts else "no metrics logged") + ".")


def _question_line(ctx: RunContext) -> str:
    return ("> The offline advisor follows fixed rules and cannot read your question (an advisor that "
            "does needs ANTHROPIC_API_KEY and no --offline); its findings are below.")


def analysis(ctx: RunContext, findings: list[Finding]) -> str:
    lines = []
    if ctx.question:
        lines += [_question_line(ctx), ""]
    lines.append("**Assessment**")
    lines += [f"- {finding.text}" for finding in findings]
    if not findings:
        lines.append(f"- The run looks healthy at epoch {ctx.epochs_done}: no rule found a problem, so "
                     "nothing needs to change.")
    if len(ctx.history) <= TREND_WINDOW:
        lines.append(f"- Only {len(ctx.history)} epoch(s) so far: the trend rules (plateau, overfitting, "
                     f"underfitting) need at least {TREND_WINDOW + 1}.")
    lines += ["", _latest_line(ctx)]
    return "\n".join(lines)


class RuleAdvisor:
    """The offline advisor: ``advise(ctx)`` runs ``RULES`` in priority order."""

    name = NAME

    def advise(self, ctx: RunContext) -> Advice:
        findings = [_only_steered(ctx, finding) for rule in RULES if (finding := rule(ctx)) is not None]
        suggestions: list[Suggestion] = []
        taken: set[str] = set()
        for finding in findings:
            for suggestion in finding.suggestions:
                if suggestion.parameter in taken or len(suggestions) >= MAX_SUGGESTIONS:
                    continue  # the first (higher-priority) rule to suggest a key wins it
                taken.add(suggestion.parameter)
                suggestions.append(suggestion)
        return Advice(analysis=analysis(ctx, findings), suggestions=suggestions, advisor=NAME)
