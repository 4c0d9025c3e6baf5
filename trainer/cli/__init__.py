"""The ``tiller`` command line: ``commands`` (the parser and each command), ``views`` (what
``runs`` and ``show`` print) and ``advisor`` (``suggest`` and ``revert``).
Torch loads only in the commands that train.
"""
