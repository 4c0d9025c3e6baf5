"""Tiller's trainer (installed as ``tiller.trainer``), one sub-package per layer:

- ``steering``: the torch-free core every loop steers through: the config schema (hot and
  fixed keys), the live config file, ``review`` of an edit, the file ``watcher``, ``Steering``
  and the learning-rate schedule. The dashboard and the CLI import only this (and the advisor).
- ``engine``: the built-in trainer's torch loop: epoch and step, optimizer, precision, EMA,
  the appliers that make each change real, checkpoints, resume, DDP.
- ``models``: the networks it builds (an MLP, timm's, the IMDB text model) and their weights.
- ``data``: the data sets it loads, split stratified into train and validation.
- ``advisor``: suggestions for a running run, from Claude or from offline rules.
- ``cli``: the ``tiller`` command line.
- ``integrations``: steering a loop Tiller did not write (``tiller.run``).
"""
