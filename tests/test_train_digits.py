"""The issue's digits run: 64,128,128,10 relu/softmax, adam 1e-3, batch 64, 50 epochs, >= 97% test accuracy.

Each run uses the CLI's split: scikit-learn's stratified 75/25
``train_test_split`` with ``random_state=seed`` (seed 0 is the split on which
scikit-learn's MLPClassifier reaches 97.8% with these settings), 10% of train
held out for validation, standardised on the training part. With 450 test
examples one example is 0.22 points, and one run's accuracy moves by about
+-0.6 points from split to split: seeds 0-4 measured 97.11, 97.33, 96.67,
97.11 and 97.78% (mean 97.20%). The test asks for a 5-seed mean of at least
97% and no run below 96%.
"""

import numpy as np

from fnn import cli


def test_digits_reaches_97_percent(tmp_path, capsys):
    import json

    accs = []
    for seed in range(5):
        out = tmp_path / f"s{seed}"
        assert (
            cli.main(
                [
                    "train",
                    "--dataset",
                    "digits",
                    "--sizes",
                    "64,128,128,10",
                    "--activation",
                    "relu",
                    "--output",
                    "softmax",
                    "--loss",
                    "cross_entropy",
                    "--optimizer",
                    "adam",
                    "--lr",
                    "1e-3",
                    "--batch-size",
                    "64",
                    "--epochs",
                    "50",
                    "--seed",
                    str(seed),
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        accs.append(json.loads((out / "metrics.json").read_text())["test_accuracy"])
    print("digits test accuracy per seed:", accs)
    assert np.mean(accs) >= 0.97, accs
    assert min(accs) >= 0.96, accs
