"""The steering core: what an edit of a run's config is, and how it reaches a training loop.

``config`` (the schema: every key, its default, its bounds, hot or fixed), ``live_config``
(the live file ``runs/<run_id>/config.json`` and the requests written into it), ``review``
(parse -> validate -> fixed keys -> diff), ``watcher`` (notices edits while the loop is busy),
``steer`` (``Steering``: take, apply and record a change at an epoch boundary), ``schedule``
(the learning rate as a pure function of progress) and ``safe_text`` (untrusted text made inert).

No module here imports torch: the dashboard and the CLI check an edit by the very rules the
trainer applies, without loading it (``tests/test_layers.py``).
"""
