"""evaluation/metrics.py: hand-computed cases, edge cases, validation, and a cross-check with sklearn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from helpdesk_triage.evaluation.metrics import (
    calibrated_ece_reference,
    binary_recall_precision,
    confusion_matrix,
    expected_calibration_error,
    head_metrics,
    label_indices,
    macro_f1_rows,
    reliability_bins,
)

ABC = ["A", "B", "C"]

# A 3-class example worked by hand.
#   index   0  1  2  3  4  5  6  7  8  9
#   true    A  A  A  A  B  B  B  C  C  C
#   pred    A  A  B  C  B  B  A  A  C  A
# Confusion (rows true, columns predicted, order A B C):
#   A: [2, 1, 1]   (support 4)
#   B: [1, 2, 0]   (support 3)
#   C: [2, 0, 1]   (support 3)
#   column sums (times predicted): A 5, B 3, C 2
Y_TRUE = list("AAAABBBCCC")
Y_PRED = list("AABCBBAACA")


def test_hand_computed_three_class_example():
    m = head_metrics(Y_TRUE, Y_PRED, ABC)
    assert m["n"] == 10
    assert m["labels"] == ABC
    assert m["confusion"] == [[2, 1, 1], [1, 2, 0], [2, 0, 1]]
    # accuracy = diagonal / n = (2 + 2 + 1) / 10
    assert m["accuracy"] == pytest.approx(0.5)
    pl = m["per_label"]
    # precision = TP / column sum: A 2/5, B 2/3, C 1/2
    # recall    = TP / row sum:    A 2/4, B 2/3, C 1/3
    # F1 = 2TP / (row + column):   A 4/9, B 4/6 = 2/3, C 2/5
    #   (A: 2·0.4·0.5 / 0.9 = 4/9;  C: 2·(1/2)(1/3) / (5/6) = 2/5)
    assert pl["A"] == pytest.approx({"precision": 0.4, "recall": 0.5, "f1": 4 / 9, "support": 4})
    assert pl["B"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert pl["C"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})
    # macro F1 = (4/9 + 2/3 + 2/5) / 3 = (20/45 + 30/45 + 18/45) / 3 = 68/135 ≈ 0.5037
    assert m["macro_f1"] == pytest.approx(68 / 135)
    # weighted F1 = (4·4/9 + 3·2/3 + 3·2/5) / 10 = (80/45 + 90/45 + 54/45) / 10 = 224/450 ≈ 0.4978
    assert m["weighted_f1"] == pytest.approx(224 / 450)
    # kappa: p_o = 0.5; p_e = Σ row·col / n² = (4·5 + 3·3 + 3·2) / 100 = 0.35
    #        (0.5 − 0.35) / (1 − 0.35) = 0.15 / 0.65 = 3/13 ≈ 0.2308
    assert m["kappa"] == pytest.approx(3 / 13)
    assert m["ece"] is None  # no probabilities given
    assert set(m) == {"n", "accuracy", "macro_f1", "weighted_f1", "labels", "per_label", "confusion", "ece", "ece_if_calibrated", "kappa"}
    assert list(m["per_label"]) == ABC
    json.dumps(m)  # plain Python numbers only


def test_confusion_matrix_helper_matches_head_metrics():
    assert confusion_matrix(Y_TRUE, Y_PRED, ABC) == [[2, 1, 1], [1, 2, 0], [2, 0, 1]]
    # label order decides row/column order
    assert confusion_matrix(Y_TRUE, Y_PRED, ["C", "B", "A"]) == [[1, 0, 2], [0, 2, 1], [1, 1, 2]]


def test_label_never_predicted():
    # true A B C C, pred A B B B
    #   A: TP 1, predicted 1, support 1 -> P 1, R 1, F1 1
    #   B: TP 1, predicted 3, support 1 -> P 1/3, R 1, F1 2·1/(1+3) = 0.5
    #   C: TP 0, never predicted, support 2 -> P 0 (zero_division=0), R 0, F1 0
    #   macro over A, B, C (all occur) = (1 + 0.5 + 0) / 3 = 0.5
    m = head_metrics(list("ABCC"), list("ABBB"), ABC)
    assert m["per_label"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_label"]["B"] == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1})
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(list("ABCC"), list("ABBB"), average="macro", zero_division=0))


def test_label_absent_from_truth_and_label_absent_from_both():
    labels = ["A", "B", "C", "D"]
    # true A A B, pred A C B
    #   A: TP 1, predicted 1, support 2 -> P 1, R 1/2, F1 2/3
    #   B: TP 1, predicted 1, support 1 -> F1 1
    #   C: predicted once, never true -> support 0, P 0, R 0, F1 0; counts in the macro average
    #   D: neither true nor predicted -> reported with support 0, left out of the macro average
    #   macro = (2/3 + 1 + 0) / 3 = 5/9;  weighted = (2·2/3 + 1·1 + 0·0) / 3 = 7/9
    m = head_metrics(list("AAB"), list("ACB"), labels)
    assert m["per_label"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_label"]["D"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(5 / 9)
    assert m["weighted_f1"] == pytest.approx(7 / 9)
    assert m["confusion"][3] == [0, 0, 0, 0] and [row[3] for row in m["confusion"]] == [0, 0, 0, 0]
    # sklearn's macro F1 without labels= averages over the same labels (those in y_true or y_pred)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(list("AAB"), list("ACB"), average="macro", zero_division=0))


def test_perfect_prediction():
    y = list("ABCABCA")
    m = head_metrics(y, y, ABC)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["weighted_f1"] == 1.0
    assert m["kappa"] == pytest.approx(1.0)
    assert m["confusion"] == [[3, 0, 0], [0, 2, 0], [0, 0, 2]]


def test_kappa_undefined_when_one_label_everywhere():
    # p_e = (3·3) / 3² = 1: kappa = 0/0, reported as None (sklearn gives nan)
    m = head_metrics(["A"] * 3, ["A"] * 3, ABC)
    assert m["kappa"] is None
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0  # macro over the one label used


def test_kappa_worse_than_chance_is_negative():
    # true A A B B, pred B B A A: p_o = 0, p_e = (2·2 + 2·2)/16 = 0.5, kappa = (0 − 0.5)/0.5 = −1
    assert head_metrics(list("AABB"), list("BBAA"), ABC)["kappa"] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def test_ece_two_bins_by_hand():
    # 2 bins: (0, 0.5] and (0.5, 1]. Labels A, B.
    #   probs       true  conf  argmax  correct  bin
    #   [0.9, 0.1]  A     0.9   A       1        2
    #   [0.8, 0.2]  B     0.8   A       0        2
    #   [0.3, 0.7]  B     0.7   B       1        2
    #   [0.6, 0.4]  B     0.6   A       0        2
    #   [0.5, 0.5]  B     0.5   A (tie) 0        1   (0.5 is the upper edge of bin 1)
    # bin 1: n 1, acc 0,       conf 0.5                        -> |0 − 0.5| = 0.5
    # bin 2: n 4, acc 2/4=0.5, conf (0.9+0.8+0.7+0.6)/4 = 0.75 -> |0.5 − 0.75| = 0.25
    # ECE = 1/5·0.5 + 4/5·0.25 = 0.1 + 0.2 = 0.3
    probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]]
    y_true = list("ABBBB")
    # y_pred is not used by the ECE (it uses the argmax of probs); pass something else on purpose
    m = head_metrics(y_true, list("AAAAA"), ["A", "B"], probs=probs, n_bins=2)
    assert m["ece"] == pytest.approx(0.3)
    assert expected_calibration_error(y_true, probs, ["A", "B"], n_bins=2) == pytest.approx(0.3)
    bins = reliability_bins(y_true, probs, ["A", "B"], n_bins=2)
    assert [(b["lower"], b["upper"], b["count"]) for b in bins] == [(0.0, 0.5, 1), (0.5, 1.0, 4)]
    assert bins[0]["accuracy"] == 0.0 and bins[0]["confidence"] == pytest.approx(0.5)
    assert bins[1]["accuracy"] == 0.5 and bins[1]["confidence"] == pytest.approx(0.75)


def test_ece_three_bins_three_classes_by_hand():
    # 3 bins: (0, 1/3], (1/3, 2/3], (2/3, 1]. Labels A, B, C.
    #   probs              true  conf  argmax  correct  bin
    #   [1.0, 0.0, 0.0]    A     1.0   A       1        3
    #   [0.4, 0.35, 0.25]  B     0.4   A       0        2
    #   [0.2, 0.5, 0.3]    B     0.5   B       1        2
    #   [0.1, 0.1, 0.8]    A     0.8   C       0        3
    # bin 1: empty
    # bin 2: n 2, acc 0.5, conf 0.45 -> 0.05
    # bin 3: n 2, acc 0.5, conf 0.9  -> 0.4
    # ECE = 2/4·0.05 + 2/4·0.4 = 0.025 + 0.2 = 0.225
    probs = [[1.0, 0.0, 0.0], [0.4, 0.35, 0.25], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]
    y_true = list("ABBA")
    m = head_metrics(y_true, list("ABBC"), ABC, probs=probs, n_bins=3)
    assert m["ece"] == pytest.approx(0.225)
    bins = reliability_bins(y_true, probs, ABC, n_bins=3)
    assert [b["count"] for b in bins] == [0, 2, 2]
    assert bins[0]["accuracy"] is None and bins[0]["confidence"] is None
    assert bins[1]["confidence"] == pytest.approx(0.45)


def test_ece_zero_for_perfectly_calibrated_toy():
    # four samples at confidence 0.75, three right (acc 0.75 = conf); two at confidence 1.0, both right
    probs = [[0.75, 0.25]] * 4 + [[0.0, 1.0]] * 2
    y_true = ["A", "A", "A", "B", "B", "B"]
    m = head_metrics(y_true, ["A", "A", "A", "A", "B", "B"], ["A", "B"], probs=probs, n_bins=10)
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_bin_edges_are_right_closed():
    # confidence exactly 0.3 belongs to (0.2, 0.3], not (0.3, 0.4] (although 0.3·10 = 3.0000000000000004)
    bins = reliability_bins(["A"], [[0.3, 0.3, 0.2, 0.2]], list("ABCD"), n_bins=10)
    assert [b["count"] for b in bins].index(1) == 2
    assert (bins[2]["lower"], bins[2]["upper"]) == (0.2, 0.3)
    bins = reliability_bins(["A", "A"], [[0.3, 0.7], [0.0, 1.0]], ["A", "B"], n_bins=10)
    assert bins[6]["count"] == 1  # 0.7 -> (0.6, 0.7]
    assert bins[9]["count"] == 1  # 1.0 -> (0.9, 1.0]


# ---------------------------------------------------------------------------------------------
# Binary recall / precision
# ---------------------------------------------------------------------------------------------


def test_binary_recall_precision():
    # true D D D A B, pred D A A D B: TP 1 (index 0), support 3 -> recall 1/3;
    # predicted D twice (index 0, 3) -> precision 1/2
    recall, precision, support = binary_recall_precision(list("DDDAB"), list("DAADB"), "D")
    assert (recall, precision, support) == (pytest.approx(1 / 3), pytest.approx(0.5), 3)
    # the same as head_metrics' per-label numbers
    pl = head_metrics(list("DDDAB"), list("DAADB"), ["A", "B", "C", "D"])["per_label"]["D"]
    assert (pl["recall"], pl["precision"], pl["support"]) == (pytest.approx(recall), pytest.approx(precision), support)


def test_binary_recall_precision_zero_division():
    assert binary_recall_precision(list("AB"), list("AB"), "critical") == (0.0, 0.0, 0)
    assert binary_recall_precision(list("DB"), list("AB"), "D") == (0.0, 0.0, 1)  # never predicted


def test_binary_recall_precision_validation():
    with pytest.raises(ValueError, match="differ in length"):
        binary_recall_precision(["D"], ["D", "A"], "D")
    with pytest.raises(ValueError, match="empty"):
        binary_recall_precision([], [], "D")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def test_different_lengths():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        head_metrics(list("ABC"), list("AB"), ABC)


def test_empty_input():
    with pytest.raises(ValueError, match="empty"):
        head_metrics([], [], ABC)


def test_labels_not_in_labels():
    with pytest.raises(ValueError, match=r"y_true holds values not in labels.*'X'"):
        head_metrics(list("AX"), list("AB"), ABC)
    with pytest.raises(ValueError, match=r"y_pred holds values not in labels.*'Z'"):
        head_metrics(list("AB"), list("AZ"), ABC)
    with pytest.raises(ValueError, match="missing label"):
        head_metrics(["A", None], ["A", "B"], ABC)


def test_bad_labels_argument():
    with pytest.raises(ValueError, match="labels is empty"):
        head_metrics(["A"], ["A"], [])
    with pytest.raises(ValueError, match="repeats"):
        head_metrics(["A"], ["A"], ["A", "B", "A"])
    with pytest.raises(ValueError, match="single string"):
        head_metrics("AB", "AB", ABC)


def test_probs_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(2, 3\)"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="2-D"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[1.0, 0.0, 0.0], [1.0]])


def test_probs_values_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[0.5, 0.2, 0.2], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[1.5, -0.5, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        head_metrics(list("AB"), list("AB"), ABC, probs=[[np.nan, 1.0, 0.0], [0.0, 1.0, 0.0]])


def test_bad_n_bins():
    for n_bins in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_bins"):
            head_metrics(["A"], ["A"], ABC, probs=[[1.0, 0.0, 0.0]], n_bins=n_bins)


# ---------------------------------------------------------------------------------------------
# Cross-check with scikit-learn on random data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_matches_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    labels = ["low", "medium", "high", "critical", "unused"]
    n = int(rng.integers(20, 300))
    # skewed label frequencies; "unused" never occurs; predictions agree with the truth ~50% of the time
    y_true = list(rng.choice(labels[:4], size=n, p=[0.55, 0.3, 0.13, 0.02]))
    noise = list(rng.choice(labels[:4], size=n, p=[0.4, 0.3, 0.25, 0.05]))
    y_pred = [t if rng.random() < 0.5 else z for t, z in zip(y_true, noise)]
    logits = rng.normal(size=(n, len(labels)))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    m = head_metrics(y_true, y_pred, labels, probs=probs)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = m["per_label"][label]
        assert got["precision"] == pytest.approx(p[i])
        assert got["recall"] == pytest.approx(r[i])
        assert got["f1"] == pytest.approx(f[i])
        assert got["support"] == s[i]
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred))
    assert m["confusion"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()

    # ECE against a direct loop implementation of Guo et al.'s definition
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.array([labels.index(t) for t in y_true])
    ece = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    assert m["ece"] == pytest.approx(ece)
    assert sum(b["count"] for b in reliability_bins(y_true, probs, labels)) == n


# ---------------------------------------------------------------------------------------------
# Macro F1 of many resamples at once (used by the bootstrap and the permutation test)
# ---------------------------------------------------------------------------------------------


def test_macro_f1_rows_hand_computed():
    # row 0: the 3-class example above, macro F1 68/135
    # row 1: true A A B, pred A C B over labels A B C D: (2/3 + 1 + 0) / 3 = 5/9 (D absent from both)
    # row 2: perfect -> 1.0; row 3: all wrong between A and B -> (0 + 0) / 2 = 0
    t = [label_indices(Y_TRUE, ABC), label_indices(list("AAB"), list("ABCD")),
         label_indices(list("ABCA"), ABC), label_indices(list("AABB"), ABC)]
    p = [label_indices(Y_PRED, ABC), label_indices(list("ACB"), list("ABCD")),
         label_indices(list("ABCA"), ABC), label_indices(list("BBAA"), ABC)]
    assert macro_f1_rows(t[0][None, :], p[0][None, :], 3)[0] == pytest.approx(68 / 135)
    assert macro_f1_rows(t[1][None, :], p[1][None, :], 4)[0] == pytest.approx(5 / 9)
    both = macro_f1_rows(np.stack([t[2], t[3]]), np.stack([p[2], p[3]]), 3)
    assert both.tolist() == [1.0, 0.0]


def test_macro_f1_rows_matches_head_metrics_on_random_resamples():
    rng = np.random.default_rng(11)
    labels = ["low", "medium", "high", "critical"]
    t = rng.integers(0, 4, size=(50, 23))
    p = np.where(rng.random((50, 23)) < 0.6, t, rng.integers(0, 4, size=(50, 23)))
    got = macro_f1_rows(t, p, 4)
    for r in range(50):
        expected = head_metrics([labels[i] for i in t[r]], [labels[i] for i in p[r]], labels)["macro_f1"]
        assert got[r] == pytest.approx(expected)


def test_macro_f1_rows_and_label_indices_validation():
    assert label_indices(list("CAB"), ABC).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="not in labels"):
        label_indices(["A", None], ABC)
    with pytest.raises(ValueError, match="2-D"):
        macro_f1_rows(np.zeros(3, dtype=int), np.zeros(3, dtype=int), 3)
    with pytest.raises(ValueError, match="0..2"):
        macro_f1_rows(np.array([[0, 3]]), np.array([[0, 1]]), 3)


def test_calibrated_ece_reference_is_the_noise_of_a_calibrated_model():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([2.0, 1.0, 1.0], size=120)
    few = calibrated_ece_reference(probs)
    assert few == calibrated_ece_reference(probs)  # fixed seed
    assert 0.0 < few["mean"] <= few["p90"] < 0.3
    # The same confidences on 40 times the rows: a calibrated model's ECE shrinks towards 0.
    many = calibrated_ece_reference(np.repeat(probs, 40, axis=0), n_draws=200)
    assert many["mean"] < few["mean"] / 3
    # Certain predictions leave no room for chance: the reference is 0.
    assert calibrated_ece_reference(np.eye(3)[rng.integers(0, 3, 50)]) == {"mean": 0.0, "p90": 0.0}
    # It matches a direct simulation with expected_calibration_error.
    labels = ["A", "B", "C"]
    direct = []
    for _ in range(300):
        y = [labels[rng.choice(3, p=row)] for row in probs]
        direct.append(expected_calibration_error(y, probs.tolist(), labels))
    assert few["mean"] == pytest.approx(np.mean(direct), abs=0.01)
