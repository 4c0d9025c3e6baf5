"""Steer your own PyTorch training loop with Tiller.

    import tiller

    with tiller.run("config.json") as run:
        for epoch in run.epochs():
            ...
            run.log(train_loss=..., val_accuracy=...)
            for change in run.changes():
                ...

See ``trainer/integrations/own_loop.py`` for the whole API and ``examples/imdb_own_loop.py``
for a worked example.
"""

from tiller.trainer.integrations.own_loop import Change, SteeredRun, run
from tiller.trainer.steering.config import ConfigError
from tiller.trainer.steering.steer import StopRequested

__all__ = ["run", "SteeredRun", "Change", "StopRequested", "ConfigError"]
