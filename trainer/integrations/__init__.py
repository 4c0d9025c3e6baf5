"""Steering a training loop that Tiller did not write: ``own_loop`` is ``tiller.run``."""
