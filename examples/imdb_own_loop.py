"""Seed 004's IMDB sentiment model in a plain PyTorch training loop, steered by Tiller.

The model is seed 004's Keras one: Embedding 16 -> global average pooling -> Dense 16
ReLU -> Dense 1, binary cross-entropy, Adam; the first part of the training reviews is
held out for validation (the seed: 10,000 of 25,000). Only the loop's few Tiller calls
are new: ``tiller.run``, ``run.epochs()``, ``run.step()``, ``run.log``, ``run.changes()``.

Run it from the repository root:

    tiller make-sample-data                      # writes sample-data/imdb.npz, offline
    python examples/imdb_own_loop.py             # [--config FILE] [--data PATH] [--runs-dir DIR]
    python examples/imdb_own_loop.py --data ~/.keras/datasets/imdb.npz   # Keras' real file

Steer it while it trains: open ``tiller dashboard`` (the run shows like any other, and its
form offers only the keys this loop reads), or from a terminal:

    tiller set latest learning_rate=0.02 batch_size=64 --reason "bigger steps"
    tiller pause latest; tiller resume latest; tiller stop latest

Each edit is validated and applies at the next epoch boundary, where this loop prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tiller

HERE = Path(__file__).resolve().parent
# The knobs this loop reads and applies; Tiller refuses edits of any other key for the run.
STEERS = ["learning_rate", "batch_size", "num_epochs", "dropout_rate"]
PAD, START, OOV, INDEX_FROM = 0, 1, 2, 3  # Keras' imdb.load_data: 0 pads, 1 starts a review, 2 is a rare word


def keras_padded(reviews: np.ndarray, vocab_size: int, max_len: int) -> torch.Tensor:
    """imdb.load_data(num_words=vocab_size) then pad_sequences(padding="post", maxlen=max_len)."""
    padded = np.zeros((len(reviews), max_len), dtype=np.int64)
    for row, ranks in enumerate(reviews):
        words = np.concatenate(([START], np.asarray(ranks, dtype=np.int64) + INDEX_FROM))
        words[words >= vocab_size] = OOV
        words = words[-max_len:]  # Keras cuts long reviews at the front
        padded[row, :len(words)] = words
    return torch.from_numpy(padded)


def load_imdb(path: Path, vocab_size: int, max_len: int) -> dict[str, TensorDataset]:
    # The reviews are ragged lists, stored pickled: load only a file you trust (Keras' own, or Tiller's sample).
    with np.load(path, allow_pickle=True) as npz:
        return {part: TensorDataset(keras_padded(npz[f"x_{part}"], vocab_size, max_len),
                                    torch.as_tensor(npz[f"y_{part}"], dtype=torch.float32))
                for part in ("train", "test")}


class BagOfEmbeddings(nn.Module):
    """Seed 004's model; the sigmoid lives in the loss (BCEWithLogitsLoss), which is steadier."""

    def __init__(self, vocab_size: int, width: int, dropout_rate: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.hidden = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout_rate)  # not in the seed; here so dropout_rate can be steered
        self.out = nn.Linear(width, 1)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        # Keras' GlobalAveragePooling1D averages the pads too; leaving them out keeps short reviews' signal.
        real = (words != PAD).unsqueeze(-1).float()
        pooled = (self.embedding(words) * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
        return self.out(self.dropout(torch.relu(self.hidden(pooled)))).squeeze(1)


def train_one_epoch(model, loader, optimizer, loss_fn, run) -> tuple[float, float]:
    model.train()
    total_loss = correct = seen = 0
    for words, labels in loader:
        run.step()  # a pause waits here, a stop ends the run between two steps
        optimizer.zero_grad()
        logits = model(words)
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += ((logits > 0).float() == labels).sum().item()
        seen += len(labels)
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate(model, data: TensorDataset, loss_fn) -> tuple[float, float, torch.Tensor]:
    """Loss, accuracy and each review's probability of being positive."""
    model.eval()
    words, labels = data.tensors
    logits = model(words)
    accuracy = ((logits > 0).float() == labels).float().mean().item()
    return loss_fn(logits, labels).item(), accuracy, torch.sigmoid(logits)


def apply_change(change: tiller.Change, model, optimizer) -> None:
    """Make a validated change real; batch_size and num_epochs are read where they are used."""
    if change.key == "learning_rate":
        for group in optimizer.param_groups:
            group["lr"] = change.new
    elif change.key == "dropout_rate":
        model.dropout.p = change.new
    why = f": {change.reason}" if change.reason else ""
    print(f"applied {change.key} {change.old!r} -> {change.new!r} (config v{change.version} from {change.source}{why})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "imdb_own_loop.json")
    parser.add_argument("--data", type=Path, default=Path("sample-data/imdb.npz"))
    parser.add_argument("--runs-dir", default=None, help="default ./runs or $TILLER_RUNS_DIR")
    args = parser.parse_args()

    with tiller.run(args.config, steers=STEERS, runs_dir=args.runs_dir, dataset=f"IMDB npz {args.data}") as run:
        config = run.config
        torch.manual_seed(config.seed)
        data = load_imdb(args.data, config.vocab_size, config.max_len)
        held_out = int(len(data["train"]) * config.val_split)  # the first reviews validate, as in the seed
        val, train = (TensorDataset(*(t[:held_out] for t in data["train"].tensors)),
                      TensorDataset(*(t[held_out:] for t in data["train"].tensors)))
        model = BagOfEmbeddings(config.vocab_size, config.embedding_dim, config.dropout_rate)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        loss_fn = nn.BCEWithLogitsLoss()

        for epoch in run.epochs():
            # Rebuilt each epoch (cheap) from the batch_size in force, so a steered batch_size applies here.
            loader = DataLoader(train, batch_size=run.config.batch_size, shuffle=True)
            train_loss, train_accuracy = train_one_epoch(model, loader, optimizer, loss_fn, run)
            val_loss, val_accuracy, val_probs = evaluate(model, val, loss_fn)
            run.log(train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss,
                    val_accuracy=val_accuracy, lr=optimizer.param_groups[0]["lr"])
            # For the dashboard's Evaluation page: confusion matrix, ROC, PR, hard samples, ...
            run.log_predictions(val_probs, val.tensors[1], class_names=["negative", "positive"])
            print(f"epoch {epoch}/{run.config.num_epochs}  loss {train_loss:.4f}  accuracy {train_accuracy:.4f}  "
                  f"val_loss {val_loss:.4f}  val_accuracy {val_accuracy:.4f}")
            for change in run.changes():
                apply_change(change, model, optimizer)

        test_loss, test_accuracy, _ = evaluate(model, data["test"], loss_fn)
        run.event("info", f"Test set: loss {test_loss:.4f}, accuracy {test_accuracy:.4f}")
        print(f"test loss {test_loss:.4f}  test accuracy {test_accuracy:.4f}")


if __name__ == "__main__":
    main()
