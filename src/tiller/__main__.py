"""``python -m tiller``: the ``tiller`` command (as torchrun starts it: ``torchrun ... -m tiller train``)."""
from tiller.trainer.cli.commands import main

if __name__ == "__main__":
    main()
