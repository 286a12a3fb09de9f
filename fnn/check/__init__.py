"""Internal: what the hand-written backprop is proven against. Public as ``fnn``
(``fnn.check_gradients``, ...).

====================  ========================================================
``autodiff``          ``jax.value_and_grad`` of the loss: JAX's reverse mode
``finite_differences`` one central difference per parameter, vectorised
``analytical``        the closed-form gradient of the single-unit example
``gradcheck``         ``check_gradients``: the three side by side, per leaf
``curvature_check``   ``check_curvature``: ``hvp`` and ``gnvp`` against JAX and
                      finite differences of the gradient
====================  ========================================================

Imports ``fnn.core`` only.
"""
