"""The optimizers: the registry by name, and the methods fnn writes itself.

=======================  =====================================================
``registry``             every method by name, as optax transforms
                         (public as ``fnn.optimizers``); ``Objective``
``gauss_newton``         Levenberg-Marquardt and Bayesian regularisation
``quasi_newton``         dense BFGS and the one-step secant
``conjugate_gradient``   scaled conjugate gradient and the ``cg*`` family
=======================  =====================================================

Imports ``fnn.core`` and ``fnn.scale`` only.
"""
