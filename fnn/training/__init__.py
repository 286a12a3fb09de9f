"""Internal: training. Public as ``fnn`` (``fnn.fit``), ``fnn.callbacks`` and ``fnn.diagnostics``.

``fit``, its compiled epoch, and what watches and keeps a run:

===============  =============================================================
``loop``         ``fit`` and ``evaluate``: the loop over epochs
``epoch``        one epoch as one compiled program
``objective``    the minibatch's loss handed to every method's update
                 (an ``fnn.optimizers.Objective``)
``callbacks``    stops, checkpoints, progress, logs (public as
                 ``fnn.callbacks``)
``history``      ``History``: what each epoch recorded; ``Stop``: why
                 the run ended
``checkpoint``   checkpoints without pickle, written atomically
``diagnostics``  per-layer gradient statistics (public as
                 ``fnn.diagnostics``)
``metrics``      the count of correct predictions per epoch
===============  =============================================================

Imports ``fnn.core``, ``fnn.check``, ``fnn.scale``, ``fnn.data`` and
``fnn.optim``.
"""
