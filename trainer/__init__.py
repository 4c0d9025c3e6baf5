"""Tiller's trainer: the config schema, the live-config watcher and the training loop."""
