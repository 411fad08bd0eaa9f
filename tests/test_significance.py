"""evaluation/significance.py: paired bootstrap CI, permutation test and McNemar, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from helpdesk_triage.evaluation.metrics import head_metrics
from helpdesk_triage.evaluation.significance import (
    bootstrap_indices,
    compare_head,
    mcnemar_exact,
    paired_bootstrap,
    permutation_test,
    verdict,
)

ABCD = ["A", "B", "C", "D"]


# ---------------------------------------------------------------------------------------------
# Identical predictions: no difference at all
# ---------------------------------------------------------------------------------------------


def test_identical_predictions_give_zero_difference_ci_and_p_one():
    y_true = list("AABBCCDDAB")
    pred = list("ABBCCCDAAB")
    boot = paired_bootstrap(y_true, pred, pred, ABCD, n_resamples=200, seed=1)
    # every resample scores both models identically: difference 0 everywhere, so the CI is [0, 0]
    assert boot["difference"] == 0.0
    assert (boot["ci_low"], boot["ci_high"]) == (0.0, 0.0)
    assert boot["macro_f1_a"] == pytest.approx(head_metrics(y_true, pred, ABCD)["macro_f1"])
    # observed |d| = 0 and every swapped |d*| = 0 >= 0: p = (1 + R) / (1 + R) = 1
    assert permutation_test(y_true, pred, pred, ABCD, n_permutations=200)["p_value"] == 1.0
    # no discordant row: b = c = 0 -> p = 1
    correct = [p == t for p, t in zip(pred, y_true)]
    assert mcnemar_exact(correct, correct) == {"a_right_b_wrong": 0, "a_wrong_b_right": 0, "p_value": 1.0}


# ---------------------------------------------------------------------------------------------
# One model right everywhere, the other wrong everywhere
# ---------------------------------------------------------------------------------------------

# 10 rows; A predicts the truth, B always predicts the "next" label (A->B, B->C, C->D, D->A).
TRUTH = list("ABCDABCDAB")
ALL_RIGHT = list(TRUTH)
ALL_WRONG = [ABCD[(ABCD.index(t) + 1) % 4] for t in TRUTH]


def test_one_model_right_where_the_other_is_wrong():
    # macro-F1: A = 1 on every sample; B has TP = 0 for every label, so F1 = 0 for every label -> 0.
    # The difference is 1 on the data and on every bootstrap resample: CI [1, 1].
    boot = paired_bootstrap(TRUTH, ALL_RIGHT, ALL_WRONG, ABCD, n_resamples=300, seed=0)
    assert (boot["macro_f1_a"], boot["macro_f1_b"], boot["difference"]) == (1.0, 0.0, 1.0)
    assert (boot["ci_low"], boot["ci_high"]) == (1.0, 1.0)
    # McNemar: b = 10 rows only A gets right, c = 0: p = 2 · P(X <= 0) = 2 · 0.5^10 = 2/1024
    m = mcnemar_exact([True] * 10, [False] * 10)
    assert (m["a_right_b_wrong"], m["a_wrong_b_right"]) == (10, 0)
    assert m["p_value"] == pytest.approx(2 / 1024)
    # Permutation: a swapped pair of models still scores 1 vs 0 only when no row or every row is
    # swapped (any other mix gives both models some right rows), probability 2 / 2^10 ≈ 0.002.
    # With 4000 swaps the expected count is ~7.8, so p ≈ 8.8 / 4001 ≈ 0.0022, far below 0.01.
    perm = permutation_test(TRUTH, ALL_RIGHT, ALL_WRONG, ABCD, n_permutations=4000, seed=0)
    assert perm["difference"] == 1.0
    assert perm["p_value"] < 0.01
    # and the same call gives the same p (fixed seed)
    assert permutation_test(TRUTH, ALL_RIGHT, ALL_WRONG, ABCD, n_permutations=4000, seed=0)["p_value"] == perm["p_value"]
    # swapping the roles flips the sign, not the p-value (two-sided)
    flipped = permutation_test(TRUTH, ALL_WRONG, ALL_RIGHT, ABCD, n_permutations=4000, seed=0)
    assert flipped["difference"] == -1.0 and flipped["p_value"] == perm["p_value"]

    result = compare_head(TRUTH, ALL_RIGHT, ALL_WRONG, ABCD, n_resamples=2000, seed=0)
    assert result["significant"] and result["accuracy_a"] == 1.0 and result["accuracy_b"] == 0.0
    sentence = verdict("category", result, "new", "old")
    assert sentence.startswith("category: new is significantly better than old at 5%")
    result_rev = compare_head(TRUTH, ALL_WRONG, ALL_RIGHT, ABCD, n_resamples=2000, seed=0)
    assert verdict("category", result_rev, "new", "old").startswith("category: old is significantly better than new")


def test_permutation_p_is_exact_in_the_limit():
    # Exact answer for the case above: P(|d*| >= 1) = 2/1024. Many swaps estimate it closely.
    perm = permutation_test(TRUTH, ALL_RIGHT, ALL_WRONG, ABCD, n_permutations=100_000, seed=3)
    assert perm["p_value"] == pytest.approx(2 / 1024, abs=0.0006)


# ---------------------------------------------------------------------------------------------
# McNemar against the binomial by hand
# ---------------------------------------------------------------------------------------------


def test_mcnemar_hand_computed():
    # b = 7 (only A right), c = 2 (only B right), plus 3 rows both right and 1 both wrong (ignored).
    # n = 9: P(X <= 2) = (C(9,0) + C(9,1) + C(9,2)) / 2^9 = (1 + 9 + 36) / 512 = 46/512
    # two-sided p = 2 · 46/512 = 92/512 = 0.1796875
    a = [True] * 7 + [False] * 2 + [True] * 3 + [False]
    b = [False] * 7 + [True] * 2 + [True] * 3 + [False]
    m = mcnemar_exact(a, b)
    assert (m["a_right_b_wrong"], m["a_wrong_b_right"]) == (7, 2)
    assert m["p_value"] == pytest.approx(92 / 512)
    assert m["p_value"] == pytest.approx(stats.binomtest(2, 9, 0.5).pvalue)
    # symmetric in the two models
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(92 / 512)


def test_mcnemar_balanced_discordance_caps_at_one():
    # b = c = 3: 2 · (1 + 6 + 15 + 20)/64 = 84/64 > 1 -> 1
    m = mcnemar_exact([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)
    assert m["p_value"] == 1.0


@pytest.mark.parametrize("b, c", [(0, 1), (1, 5), (12, 3), (20, 20), (30, 11)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    a = [True] * b + [False] * c
    other = [False] * b + [True] * c
    expected = min(1.0, 2 * sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c))
    assert mcnemar_exact(a, other)["p_value"] == pytest.approx(expected)
    assert mcnemar_exact(a, other)["p_value"] == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)


# ---------------------------------------------------------------------------------------------
# Vectorised resampling against a plain loop over head_metrics
# ---------------------------------------------------------------------------------------------


def _random_case(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    y = list(rng.choice(ABCD, size=n, p=[0.4, 0.3, 0.2, 0.1]))
    a = [t if rng.random() < 0.7 else rng.choice(ABCD) for t in y]
    b = [t if rng.random() < 0.5 else rng.choice(ABCD) for t in y]
    return y, a, b


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_matches_a_plain_loop(seed):
    y, a, b = _random_case(seed)
    boot = paired_bootstrap(y, a, b, ABCD, n_resamples=150, seed=seed)
    idx = np.concatenate(list(bootstrap_indices(len(y), 150, seed)))
    assert idx.shape == (150, len(y))
    diffs = []
    for row in idx:
        t = [y[i] for i in row]
        diffs.append(head_metrics(t, [a[i] for i in row], ABCD)["macro_f1"] - head_metrics(t, [b[i] for i in row], ABCD)["macro_f1"])
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert boot["ci_low"] == pytest.approx(low) and boot["ci_high"] == pytest.approx(high)
    assert boot["difference"] == pytest.approx(head_metrics(y, a, ABCD)["macro_f1"] - head_metrics(y, b, ABCD)["macro_f1"])
    assert boot["ci_low"] < boot["ci_high"]


def test_permutation_matches_a_plain_loop():
    y, a, b = _random_case(5, n=30)
    n_perm = 120
    result = permutation_test(y, a, b, ABCD, n_permutations=n_perm, seed=9)
    observed = abs(head_metrics(y, a, ABCD)["macro_f1"] - head_metrics(y, b, ABCD)["macro_f1"])
    swaps = np.random.default_rng(9).random((n_perm, len(y))) < 0.5  # the draws the test makes, in one chunk
    count = 0
    for swap in swaps:
        a_star = [bi if s else ai for ai, bi, s in zip(a, b, swap)]
        b_star = [ai if s else bi for ai, bi, s in zip(a, b, swap)]
        d = abs(head_metrics(y, a_star, ABCD)["macro_f1"] - head_metrics(y, b_star, ABCD)["macro_f1"])
        count += d >= observed - 1e-12
    assert result["p_value"] == pytest.approx((1 + count) / (1 + n_perm))
    assert 0 < result["p_value"] <= 1


def test_fixed_seed_is_reproducible_and_seed_matters():
    y, a, b = _random_case(2)
    first = paired_bootstrap(y, a, b, ABCD, n_resamples=100, seed=4)
    assert paired_bootstrap(y, a, b, ABCD, n_resamples=100, seed=4) == first
    assert paired_bootstrap(y, a, b, ABCD, n_resamples=100, seed=5)["ci_low"] != first["ci_low"]


def test_no_significant_difference_sentence():
    y, a, _ = _random_case(7, n=20)
    b = list(a)
    b[0] = "D" if a[0] != "D" else "A"  # one row differs
    result = compare_head(y, a, b, ABCD, n_resamples=300, seed=0)
    assert not result["significant"]
    assert verdict("severity", result, "m1", "m2").startswith("severity: no significant difference at 5% between m1 and m2")
    assert result["a_right_b_wrong"] + result["a_wrong_b_right"] <= 1


def test_validation():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(list("AB"), list("AB"), list("A"), ABCD)
    with pytest.raises(ValueError, match="not in labels"):
        permutation_test(list("AB"), list("AX"), list("AB"), ABCD)
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([], [], [], ABCD)
    with pytest.raises(ValueError, match="positive integer"):
        paired_bootstrap(list("AB"), list("AB"), list("AB"), ABCD, n_resamples=0)
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([True], [True, False])


def test_a_significant_verdict_never_sits_beside_an_interval_holding_zero():
    for seed in range(40):
        y, a, b = _random_case(seed, n=25)
        result = compare_head(y, a, b, ABCD, n_resamples=200, seed=seed)
        if result["significant"]:
            assert result["ci_low"] > 0 or result["ci_high"] < 0, result
        elif result["permutation_p"] < result["alpha"]:
            assert result["ci_low"] <= 0 <= result["ci_high"]  # the permutation test alone no longer decides
        sentence = verdict("category", result, "m1", "m2")
        assert ("significantly better" in sentence) == result["significant"]
