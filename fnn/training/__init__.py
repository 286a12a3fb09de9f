"""Training: ``fit``, its compiled epoch, and what watches and keeps a run.

===============  =============================================================
``loop``         ``fit`` and ``evaluate``: the loop over epochs
``epoch``        one epoch as one compiled program
``callbacks``    stops, checkpoints, progress, logs (public as
                 ``fnn.callbacks``)
``history``      ``History``: what each epoch recorded
``checkpoint``   checkpoints without pickle, written atomically
``diagnostics``  per-layer gradient statistics (public as
                 ``fnn.diagnostics``)
``metrics``      accuracy and the other per-epoch metrics
===============  =============================================================

Imports ``fnn.core``, ``fnn.check``, ``fnn.scale``, ``fnn.data`` and
``fnn.optim``.
"""
