"""The built-in trainer's engine (torch): ``loop`` runs a run from its config, ``epoch`` and
``step`` train, ``state`` holds what a run keeps in memory (model, optimizer, scaler, EMA...),
``appliers`` make each accepted change real at the epoch boundary, ``checkpoint`` and
``resume`` save and go on, ``distributed`` and ``job_steering`` run it under torchrun.
"""
