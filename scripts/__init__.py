"""The experiments behind the scripts in this folder, one module each: why deep nets fail to train, the 1986
problems, overfitting, depth, Bayesian regularisation, the edge of stability, the deep autoencoder.

Not installed with fnn: run the scripts as files (``python scripts/overfitting.py``), or import the
package from the repository's root (``from scripts import overfit``).

===============  ===============================  ==================================================
module           script                           experiment
===============  ===============================  ==================================================
``vanishing``    ``vanishing_gradients.py``       per-layer gradient norms at initialisation, by
                                                  init scheme and activation
``classic``      ``classic_experiments.py``       Rumelhart, Hinton & Williams (1986): XOR, the
                                                  8-3-8 encoder, symmetry
``overfit``      ``overfitting.py``               train and validation curves parting; early
                                                  stopping; dropout
``depth``        ``residual_depth.py``            plain against residual chains, 8 to 64 layers
``bayes``        ``bayesian_regularisation.py``   Levenberg-Marquardt against ``br`` on a noisy sine
``eos``          ``edge_of_stability.py``         full-batch GD's sharpness rising to ``2/eta`` and
                                                  staying there (Cohen et al. 2021)
``autoencoder``  ``deep_autoencoder.py``          Hinton & Salakhutdinov's autoencoder from random
                                                  inits: Hessian-free, K-FAC, scg, L-BFGS, Adam,
                                                  momentum (Martens 2010; Martens & Grosse 2015)
``common``                                        the digits probe batch; results and figures
===============  ===============================  ==================================================

``training_functions.py`` (MATLAB's comparison of its training functions) runs
``benchmarks.training_functions`` and ``train.py`` is ``fnn train``. Every gradient is fnn's
hand-written backpropagation.
"""
