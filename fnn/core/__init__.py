"""Internal: the network math and its hand-written derivatives. Public as ``fnn`` and ``fnn.protocol``.

The bottom of fnn, module by module:

==================  ==========================================================
``activations``     each activation with its derivative, written by hand
``losses``          each loss, and its output delta ``dL/dz_out``
``initializers``    the weight-initialisation schemes
``protocol``        what every part of fnn needs from a network (``Network``)
``mlp``             ``MLP``: a chain of dense layers
``graph``           ``Graph`` and ``Dense``: any feed-forward connectivity
``forward``         the forward pass and its cache; ``predict``, ``loss``
``backprop``        the delta recursion over the adjoint graph; ``backprop``
``rop``             Pearlmutter's R-operator: the two passes along a direction
``curvature``       ``hvp``, ``gnvp``, ``curvature``: products, diagonals, factors
``manual_vjp``      the loss as a ``jax.custom_vjp`` whose rule is ``backprop``
``dispatch``        the per-call path of the public functions
``validation``      the checks of their inputs
==================  ==========================================================

Nothing here imports anything of fnn outside ``fnn.core``.
"""
