"""The experiments behind ``scripts/``, one module each: why deep nets fail to train, the 1986
problems, overfitting, depth, Bayesian regularisation, the edge of stability, the deep autoencoder.

============================  ================================================
``vanishing_gradients``       per-layer gradient norms at initialisation, by
                              init scheme and activation
``classic``                   Rumelhart, Hinton & Williams (1986): XOR, the
                              8-3-8 encoder, symmetry
``overfitting``               train and validation curves parting; early
                              stopping; dropout
``residual_depth``            plain against residual chains, 8 to 64 layers
``bayesian_regularisation``   Levenberg-Marquardt against ``br`` on a noisy sine
``edge_of_stability``         full-batch GD's sharpness rising to ``2/eta`` and
                              staying there (Cohen et al. 2021)
``deep_autoencoder``          Hinton & Salakhutdinov's autoencoder from random
                              inits: Hessian-free, K-FAC, scg, L-BFGS, Adam,
                              momentum (Martens 2010; Martens & Grosse 2015)
``common``                    the digits probe batch; results and figures
============================  ================================================

Every gradient is fnn's hand-written backpropagation.
"""
