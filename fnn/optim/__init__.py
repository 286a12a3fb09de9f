"""Internal: the optimizers. Public as ``fnn.optimizers``.

Each method is one module declaring its ``Method`` records; the registry collects them:

=======================  =====================================================
``method``               ``Method``: a method's factory, defaults, reports and
                         stopping rule
``objective``            ``Objective``: what a method may ask of the loss
``registry``             every method by name (public as ``fnn.optimizers``)
``first_order``          optax's methods by name, and ``adaptive_lr``
``gauss_newton``         Levenberg-Marquardt and Bayesian regularisation
``conjugate_gradient``   scaled conjugate gradient and the ``cg*`` family
``hessian_free``         Hessian-free, and the linear CG it solves with
``kfac``                 K-FAC
``quasi_newton``         dense BFGS and the one-step secant
=======================  =====================================================

Imports ``fnn.core`` and ``fnn.scale`` only.
"""
