"""evaluation/routing_impact.py: under/over-triage, SLA-weighted cost, coverage vs accuracy, the cost file."""

from __future__ import annotations

import pytest

from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.evaluation.routing_impact import (
    DEFAULT_COSTS_PATH,
    CostMatrixError,
    RoutingCosts,
    coverage_curve,
    coverage_report,
    routing_cost,
    routing_impact,
    threshold_for_coverage,
    triage_counts,
)

# ---------------------------------------------------------------------------------------------
# The default cost matrix
# ---------------------------------------------------------------------------------------------


def test_default_cost_matrix_loads_with_the_documented_numbers():
    costs = RoutingCosts.load()
    assert costs.source == str(DEFAULT_COSTS_PATH)
    cat, sev = costs.matrices["category"], costs.matrices["severity"]
    assert set(cat) == set(LABELS.categories) and all(set(row) == set(LABELS.categories) for row in cat.values())
    assert set(sev) == set(LABELS.severities)
    # missing an escalation costs most; over-escalating costs an agent's time
    assert cat["D"] == {"A": 10, "B": 10, "C": 10, "D": 0}
    assert [cat[t]["D"] for t in "ABC"] == [2, 2, 2]
    assert sev["critical"] == {"low": 20, "medium": 20, "high": 20, "critical": 0}
    assert [sev[t]["critical"] for t in ("low", "medium", "high")] == [3, 3, 3]
    # a true B (1 h first response) sent to the C queue (12 h) costs more than sent to A (1 h)
    assert cat["B"]["C"] > cat["B"]["A"]
    for head in ("category", "severity"):
        matrix = costs.array(head, LABELS.codes(head))
        assert (matrix.diagonal() == 0).all() and (matrix >= 0).all()
        # the most expensive error of the head is missing its escalation label (last row)
        assert matrix.max() == matrix[-1, :-1].min()


# ---------------------------------------------------------------------------------------------
# Cost-file validation
# ---------------------------------------------------------------------------------------------

GOOD = """
[category]
A = { A = 0, B = 1, C = 1, D = 1 }
B = { A = 1, B = 0, C = 1, D = 1 }
C = { A = 1, B = 1, C = 0, D = 1 }
D = { A = 5, B = 5, C = 5, D = 0 }
[severity]
low = { low = 0, medium = 1, high = 1, critical = 1 }
medium = { low = 1, medium = 0, high = 1, critical = 1 }
high = { low = 1, medium = 1, high = 0, critical = 1 }
critical = { low = 7.5, medium = 7.5, high = 7.5, critical = 0 }
"""


def test_custom_cost_file(tmp_path):
    path = tmp_path / "costs.toml"
    path.write_text(GOOD, encoding="utf-8")
    costs = RoutingCosts.load(path)
    assert costs.matrices["severity"]["critical"]["low"] == 7.5
    assert costs.source == str(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("D = { A = 5, B = 5, C = 5, D = 0 }\n", ""), "row 'D' missing"),
        (lambda s: s.replace("A = { A = 0, B = 1, C = 1, D = 1 }", "A = { A = 0, B = 1, C = 1 }"), "A: no cost for predicted 'D'"),
        (lambda s: s.replace("critical = { low = 7.5", "critical = { low = -1"), "critical.low must be a non-negative number, got -1"),
        (lambda s: s.replace("B = { A = 1, B = 0", 'B = { A = "high", B = 0'), "B.A must be a non-negative number"),
        (lambda s: s.replace("B = { A = 1, B = 0", "B = { A = true, B = 0"), "B.A must be a non-negative number"),
        (lambda s: s.replace("C = { A = 1, B = 1, C = 0", "C = { A = 1, B = 1, C = 2"), "C.C must be 0"),
        (lambda s: s.replace("A = { A = 0, B = 1, C = 1, D = 1 }", "A = { A = 0, B = 1, C = 1, D = 1, E = 1 }"), "unknown predicted label(s) ['E']"),
        (lambda s: s.replace("[category]", "[category]\nE = { A = 1 }"), "unknown true label(s) ['E']"),
        (lambda s: s + "\n[sentiment]\nx = 1\n", "unknown table(s) ['sentiment']"),
        (lambda s: s.split("[severity]")[0], "[severity] table missing"),
        (lambda s: s.replace("=", ":", 1), "not valid TOML"),
    ],
)
def test_bad_cost_files_name_the_file_and_the_problem(tmp_path, edit, message):
    path = tmp_path / "my_costs.toml"
    path.write_text(edit(GOOD), encoding="utf-8")
    with pytest.raises(CostMatrixError) as info:
        RoutingCosts.load(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_missing_cost_file(tmp_path):
    with pytest.raises(CostMatrixError, match="no such cost-matrix file"):
        RoutingCosts.load(tmp_path / "nope.toml")
    with pytest.raises(CostMatrixError, match="is a folder"):
        RoutingCosts.load(tmp_path)


# ---------------------------------------------------------------------------------------------
# Under / over-triage and cost, by hand
# ---------------------------------------------------------------------------------------------

#   row   true  pred
#   0     D     D      correct escalation
#   1     D     A      under-triage
#   2     D     C      under-triage
#   3     A     D      over-triage
#   4     B     D      over-triage
#   5     C     B      plain error, no escalation involved
#   6     None  D      no label: ignored
CAT_TRUE = ["D", "D", "D", "A", "B", "C", None]
CAT_PRED = ["D", "A", "C", "D", "D", "B", "D"]
#   row   true      pred
#   0     critical  high      under-triage
#   1     critical  critical  correct
#   2     high      critical  over-triage
#   3     low       low
#   4     medium    low       one step too low
#   5     None      critical  ignored
#   6     low       medium    one step too high
SEV_TRUE = ["critical", "critical", "high", "low", "medium", None, "low"]
SEV_PRED = ["high", "critical", "critical", "low", "low", "critical", "medium"]


def test_triage_counts_by_hand():
    c = triage_counts(CAT_TRUE, CAT_PRED, "category")
    # 6 labelled rows; 3 true D; D predicted on rows 0, 3, 4 (row 6 unlabelled)
    assert c == {"escalation_label": "D", "n": 6, "true_escalations": 3, "predicted_escalations": 3,
                 "under_triage": 2, "over_triage": 2}
    s = triage_counts(SEV_TRUE, SEV_PRED, "severity")
    assert s == {"escalation_label": "critical", "n": 6, "true_escalations": 2, "predicted_escalations": 2,
                 "under_triage": 1, "over_triage": 1}


def test_routing_cost_with_the_default_matrix_by_hand():
    costs = RoutingCosts.load()
    # category: D→D 0 + D→A 10 + D→C 10 + A→D 2 + B→D 2 + C→B 1 = 25 over 6 labelled rows
    cat = routing_cost(CAT_TRUE, CAT_PRED, "category", costs)
    assert cat == {"n": 6, "total": 25.0, "per_row": pytest.approx(25 / 6)}
    # severity: critical→high 20 + 0 + high→critical 3 + 0 + medium→low 1 + low→medium 0.5 = 24.5 over 6
    sev = routing_cost(SEV_TRUE, SEV_PRED, "severity", costs)
    assert sev == {"n": 6, "total": 24.5, "per_row": pytest.approx(24.5 / 6)}
    impact = routing_impact({"category": CAT_TRUE, "severity": SEV_TRUE}, {"category": CAT_PRED, "severity": SEV_PRED}, costs)
    # combined over the 7 rows: (25 + 24.5) / 7
    assert impact["total_cost"] == 49.5 and impact["n_rows"] == 7
    assert impact["cost_per_row"] == pytest.approx(49.5 / 7)
    assert impact["category"]["under_triage"] == 2 and impact["severity"]["over_triage"] == 1
    assert impact["category"]["cost"] == 25.0 and impact["severity"]["cost_per_row"] == pytest.approx(24.5 / 6)
    assert impact["costs_file"] == str(DEFAULT_COSTS_PATH)


def test_a_custom_matrix_changes_the_cost(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(GOOD, encoding="utf-8")
    costs = RoutingCosts.load(path)
    # D→A 5 + D→C 5 + A→D 1 + B→D 1 + C→B 1 = 13
    assert routing_cost(CAT_TRUE, CAT_PRED, "category", costs)["total"] == 13.0
    # critical→high 7.5 + high→critical 1 + medium→low 1 + low→medium 1 = 10.5
    assert routing_cost(SEV_TRUE, SEV_PRED, "severity", costs)["total"] == 10.5


def test_perfect_routing_costs_nothing_and_no_labels_gives_none():
    costs = RoutingCosts.load()
    assert routing_cost(list("ABCD"), list("ABCD"), "category", costs)["total"] == 0.0
    assert routing_cost([None, None], ["A", "D"], "category", costs) == {"n": 0, "total": 0.0, "per_row": None}
    with pytest.raises(ValueError, match="differ in length"):
        triage_counts(["D"], ["D", "A"], "category")


# ---------------------------------------------------------------------------------------------
# Coverage vs accuracy, by hand
# ---------------------------------------------------------------------------------------------

#   confidence  0.9  0.8  0.7  0.6  0.5  0.4  0.3  0.2  0.1  0.95
#   correct     1    1    0    1    0    1    0    0    0    1
CONF = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.95]
OK = [True, True, False, True, False, True, False, False, False, True]


def test_coverage_curve_by_hand():
    points = {p["threshold"]: p for p in coverage_curve(CONF, OK)}
    assert len(points) == 21 and min(points) == 0.0 and max(points) == 1.0
    # t = 0: all 10 covered, 5 right
    assert points[0.0] == {"threshold": 0.0, "n_covered": 10, "coverage": 1.0, "accuracy": 0.5}
    # t = 0.5: 0.9, 0.8, 0.7, 0.6, 0.5, 0.95 -> 6 covered, right 1+1+0+1+0+1 = 4
    assert points[0.5]["n_covered"] == 6 and points[0.5]["accuracy"] == pytest.approx(4 / 6)
    # t = 0.8 (inclusive): 0.9, 0.8, 0.95 -> 3 covered, all right
    assert points[0.8]["n_covered"] == 3 and points[0.8]["coverage"] == pytest.approx(0.3) and points[0.8]["accuracy"] == 1.0
    # t = 1: nothing covered, accuracy undefined
    assert points[1.0] == {"threshold": 1.0, "n_covered": 0, "coverage": 0.0, "accuracy": None}
    coverages = [p["coverage"] for p in coverage_curve(CONF, OK)]
    assert coverages == sorted(coverages, reverse=True)


def test_threshold_for_80_percent_coverage_by_hand():
    # 80% of 10 = 8 rows: sorted confidences 0.95 0.9 0.8 0.7 0.6 0.5 0.4 0.3 | 0.2 0.1 -> t = 0.3;
    # right among those 8: 1 1 1 0 1 0 1 0 = 5 -> accuracy 5/8
    at = threshold_for_coverage(CONF, OK, 0.8)
    assert at == {"target": 0.8, "threshold": 0.3, "n_covered": 8, "coverage": 0.8, "accuracy": 0.625}
    # 0.8 · 10 is 8.000000000000002 in floating point: must still be 8 rows, not 9
    assert threshold_for_coverage(CONF, OK, 0.8)["n_covered"] == 8
    # 100% coverage: the lowest confidence, everything covered
    assert threshold_for_coverage(CONF, OK, 1.0)["threshold"] == 0.1


def test_threshold_for_coverage_with_ties():
    # 50% of 5 = 2.5 -> 3 rows; the 3rd-highest confidence is 0.9, tied with a 4th: coverage 4/5
    at = threshold_for_coverage([0.9, 0.9, 0.9, 0.9, 0.5], [True, True, False, True, True], 0.5)
    assert at["threshold"] == 0.9 and at["n_covered"] == 4 and at["coverage"] == 0.8 and at["accuracy"] == 0.75


def test_coverage_report_and_validation():
    report = coverage_report(CONF, OK)
    assert report["n"] == 10 and report["accuracy_all"] == 0.5 and report["at_target"]["threshold"] == 0.3
    with pytest.raises(ValueError, match="differ in length"):
        coverage_curve([0.5], [True, False])
    with pytest.raises(ValueError, match="empty"):
        threshold_for_coverage([], [])
    with pytest.raises(ValueError, match="target"):
        threshold_for_coverage(CONF, OK, 0.0)
