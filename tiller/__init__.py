"""Steer your own PyTorch training loop with Tiller.

    import tiller

    with tiller.run("config.json") as run:
        for epoch in run.epochs():
            ...
            run.log(train_loss=..., val_accuracy=...)
            for change in run.changes():
                ...

See ``trainer/own_loop.py`` for the whole API and ``examples/imdb_own_loop.py``
for a worked example.
"""

from trainer.config import ConfigError
from trainer.own_loop import Change, SteeredRun, run
from trainer.steer import StopRequested

__all__ = ["run", "SteeredRun", "Change", "StopRequested", "ConfigError"]
