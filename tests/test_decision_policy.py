"""The decision policy (policy/decision_policy.py): expected cost, thresholds, the rules' evidence, automation levels,
the policy file's checks, its place in the triage answer, and `triage tune-policy`'s fitting."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.evaluation.predictions import HeadOutputs, Predictions
from helpdesk_triage.policy.decision_policy import DecisionPolicy, DecisionPolicyError
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.prediction import HeadPrediction, TextPrediction, one_label_distribution
from helpdesk_triage.policy.triage import TriagePolicy, triage
from helpdesk_triage.training.policy_tuning import TuneTargets, parse_targets, policy_toml, summary, tune

GENERIC = DecisionPolicy.load()
SEVERITY = LABELS.codes("severity")


def distribution(head: str, scores: dict[str, float]) -> HeadPrediction:
    full = {c: scores.get(c, 0.0) for c in LABELS.codes(head)}
    best = max(full, key=full.get)
    return HeadPrediction(best, full[best], full)


def prediction(severity: dict[str, float], category: str = "C", confidence: float = 0.95) -> TextPrediction:
    return TextPrediction(category=one_label_distribution("category", category, confidence),
                          severity=distribution("severity", severity),
                          sentiment=one_label_distribution("sentiment", "negative", 0.9))


class FixedModel:
    version = "fixed-test-1"

    def __init__(self, answer: TextPrediction) -> None:
        self.answer = answer

    def predict(self, texts):
        return [self.answer for _ in texts]


def policy(**raw) -> DecisionPolicy:
    return DecisionPolicy.from_dict(raw)


# ---------------------------------------------------------------------------------------------
# Deciding
# ---------------------------------------------------------------------------------------------


def test_a_twenty_percent_emergency_gets_the_emergency_label_and_sla_by_cost():
    answer = prediction({"low": 0.7, "medium": 0.1, "critical": 0.2})
    [decided] = GENERIC.decide([answer], ["衣服有个洞"], "fixed-test-1")
    severity = decided.heads["severity"]
    assert (severity.label, severity.rule, severity.argmax_label) == ("critical", "cost", "low")
    assert severity.probability == pytest.approx(0.2)
    [response] = triage(["衣服有个洞"], received_at="2026-03-10T10:00:00+08:00", model=FixedModel(answer),
                        policy=TriagePolicy.load())
    assert response.severity.label == "critical" and response.severity.decided_by == "cost"
    assert response.severity.most_probable == "low"
    assert response.sla.rule.startswith("emergency") and response.sla.escalate_immediately
    assert response.severity.routing == "review" and response.needs_human_review


def test_a_five_percent_emergency_stays_low_without_a_threshold_and_is_caught_with_one():
    answer = prediction({"low": 0.9, "medium": 0.05, "critical": 0.05})
    assert GENERIC.decide([answer], ["x"], "m")[0].heads["severity"].label == "low"
    with_threshold = policy(thresholds={"severity": {"critical": 0.04}})
    severity = with_threshold.decide([answer], ["x"], "m")[0].heads["severity"]
    assert (severity.label, severity.rule) == ("critical", "threshold")


def test_the_costs_of_the_file_decide_not_a_constant(tmp_path):
    answer = prediction({"low": 0.7, "medium": 0.1, "critical": 0.2})
    costs = (tmp_path / "costs.toml")
    text = (GENERIC.costs.source and open(GENERIC.costs.source, encoding="utf-8").read())
    costs.write_text(text.replace("critical = {                  low = 20,    medium = 20,  high = 20,",
                                  "critical = {                  low = 2,     medium = 2,   high = 2,"), encoding="utf-8")
    cheap_miss = tmp_path / "policy.toml"
    cheap_miss.write_text('costs = "costs.toml"\n', encoding="utf-8")
    assert DecisionPolicy.load(cheap_miss).decide([answer], ["x"], "m")[0].heads["severity"].label == "low"


def test_the_rules_evidence_decides_through_the_stacker_and_says_so():
    fitted = policy(model_version="m", stacker={"severity": {"scale": 1.0, "evidence": {"critical": 3.0}}})
    answer = prediction({"low": 0.9, "medium": 0.07, "critical": 0.03})
    with_cue, without = fitted.decide([answer, answer], ["吃了以后住院了", "吃了以后不太好"], "m")
    assert (with_cue.heads["severity"].label, with_cue.heads["severity"].rule) == ("critical", "cue")
    assert with_cue.heads["severity"].probability > 0.3  # 0.03·e³ renormalised
    assert without.heads["severity"].label == "low" and without.heads["severity"].rule == "argmax"


def test_a_policy_fitted_for_another_model_keeps_only_costs_and_levels():
    fitted = policy(model_version="other", stacker={"severity": {"evidence": {"critical": 5.0}}},
                    thresholds={"severity": {"critical": 0.01}})
    answer = prediction({"low": 0.95, "medium": 0.03, "critical": 0.02})
    severity = fitted.decide([answer], ["住院了"], "m")[0].heads["severity"]
    assert severity.label == "low" and severity.scores["critical"] == pytest.approx(0.02)


def test_automation_levels_route_by_label_and_probability():
    levels = policy(automation={"category": {"A": {"level": "automate", "min_probability": 0.9},
                                             "D": {"level": "review"}}})
    sure, unsure, complaint = (prediction({"low": 1.0}, "A", 0.95), prediction({"low": 1.0}, "A", 0.85),
                               prediction({"low": 1.0}, "D", 0.99))
    routed = [d.heads["category"].routing for d in levels.decide([sure, unsure, complaint], ["a", "b", "c"], "m")]
    assert routed == ["auto", "review", "review"]


def test_degraded_answers_are_the_rules_labels_and_all_for_review():
    answer = prediction({"low": 0.5, "medium": 0.5 / 3, "high": 0.5 / 3, "critical": 0.5 / 3})
    decided = GENERIC.decide([answer], ["x"], "keyword-rules-1", degraded=True)[0]
    assert decided.heads["severity"].label == "low" and decided.heads["severity"].rule == "argmax"
    assert {d.routing for h, d in decided.heads.items() if h != "sentiment"} == {"review"}


@pytest.mark.parametrize("raw, message", [
    ({"automation": {"category": {"A": {"level": "always"}}}}, "needs level"),
    ({"automation": {"category": {"Z": {"level": "review"}}}}, "unknown label"),
    ({"automation": {"category": {"A": {"level": "automate", "min_probability": 1.5}}}}, "min_probability"),
    ({"stacker": {"severity": {"evidence": {"critical": 1.0}}}}, "needs model_version"),
    ({"model_version": "m", "stacker": {"severity": {"scale": -1}}}, "scale must be a positive"),
    ({"thresholds": {"severity": {"critical": 2}}}, r"probability in \[0, 1\]"),
    ({"thresholds": {"mood": {"x": 0.1}}}, "unknown head"),
    ({"threshold": {}}, "unknown key"),
])
def test_a_bad_policy_file_names_what_is_wrong(raw, message):
    with pytest.raises(DecisionPolicyError, match=message):
        DecisionPolicy.from_dict(raw, "bad.toml")


def test_a_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(DecisionPolicyError, match="no such decision policy file"):
        DecisionPolicy.load(tmp_path / "nope.toml")


def test_a_model_folder_with_its_own_policy_is_preferred(tmp_path):
    (tmp_path / "decision_policy.toml").write_text('[thresholds.severity]\ncritical = 0.3\n', encoding="utf-8")
    assert DecisionPolicy.for_model(tmp_path).thresholds == {"severity": {"critical": 0.3}}
    assert DecisionPolicy.for_model(tmp_path / "elsewhere").source == GENERIC.source


# ---------------------------------------------------------------------------------------------
# Tuning
# ---------------------------------------------------------------------------------------------


def synthetic(n: int = 600, seed: int = 0):
    """Severity where the model under-calls critical, and a critical cue (住院) marks most true critical rows."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(SEVERITY, size=n, p=[0.5, 0.3, 0.1, 0.1])
    texts, probs = [], []
    for t in truth:
        cue = t == "critical" and rng.random() < 0.8 or t != "critical" and rng.random() < 0.03
        texts.append("吃了以后住院了" if cue else "东西一般")
        p = np.full(4, 0.05)
        if t == "critical":  # the model puts the emergencies mostly on "high"
            p[SEVERITY.index("critical")] += 0.1
            p[SEVERITY.index("high")] += 0.5
        else:
            p[SEVERITY.index(t)] += 0.5
        p = p + rng.random(4) * 0.3
        probs.append(p / p.sum())
    probs = np.array(probs)
    heads = {}
    for head in HEADS:
        codes = LABELS.codes(head)
        if head == "severity":
            heads[head] = HeadOutputs(codes, tuple(truth), tuple(codes[i] for i in probs.argmax(1)), probs, probs.max(1))
        else:
            p = np.tile(np.eye(len(codes))[0] * 0.9 + 0.1 / len(codes), (n, 1))
            heads[head] = HeadOutputs(codes, (codes[0],) * n, (codes[0],) * n, p, p.max(1))
    return Predictions("synthetic-1", heads), texts


def test_tuning_learns_the_cue_meets_the_target_recall_and_the_accuracy_of_auto_routing():
    predictions, texts = synthetic()
    targets = TuneTargets(parse_targets(["critical=0.95"]), accuracy=0.9)
    fitted = tune(predictions, texts, GENERIC, targets)
    assert fitted.model_version == "synthetic-1"
    assert fitted.stackers["severity"].evidence["critical"] > 1.0
    figures = summary(predictions, texts, fitted)
    assert figures["argmax"]["critical_recall"] < 0.5
    assert figures["policy"]["critical_recall"] >= 0.95
    assert figures["policy"]["severity_auto_accuracy"] >= 0.9
    assert fitted.automation["severity"]["critical"].level == "review"  # the base level stays


def test_a_written_policy_reads_back_to_the_same_decisions(tmp_path):
    predictions, texts = synthetic(300, seed=1)
    fitted = tune(predictions, texts, GENERIC, TuneTargets(parse_targets(["critical=0.9"]), 0.9))
    path = tmp_path / "decision_policy.toml"
    path.write_text(policy_toml(fitted, summary(predictions, texts, fitted), ["synthetic.jsonl"]), encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))
    again = DecisionPolicy.load(path)
    probs = predictions.head("severity").probs
    first = [d.label for d in fitted.decide_head("severity", probs, texts, "synthetic-1")]
    second = [d.label for d in again.decide_head("severity", probs, texts, "synthetic-1")]
    assert first == second and "critical" in first


@pytest.mark.parametrize("item", ["critical", "critical=1.5", "urgent=0.9", "D=abc"])
def test_bad_targets_are_refused(item):
    with pytest.raises(ValueError, match="LABEL=RECALL"):
        parse_targets([item])


def test_tune_policy_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "东西很好", "category": "A"}\n', encoding="utf-8")
    assert main(["tune-policy", "--data", str(data), "--out", str(tmp_path / "p.toml"), "--target-recall", "critical=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "critical=2" in err[0]
    assert main(["tune-policy", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "p.toml")]) == 2
    assert "none.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "p.toml").exists()


def test_tune_policy_cli_writes_a_policy_the_service_reads(tmp_path, monkeypatch, capsys):
    import helpdesk_triage.model.triage_model as triage_model

    class Emergencies:
        """Under-calls critical: 0.3 on it when 住院 is in the text, 0.02 otherwise."""
        version = "emergencies-1"

        def predict(self, texts):
            out = []
            for text in texts:
                p = 0.3 if "住院" in text else 0.02
                severity = {"low": 0.9 - p, "medium": 0.05, "high": 0.05, "critical": p}
                out.append(TextPrediction(category=one_label_distribution("category", "D", 0.9),
                                          severity=distribution("severity", severity),
                                          sentiment=one_label_distribution("sentiment", "negative", 0.9)))
            return out

    monkeypatch.setattr(triage_model, "load_classifier", lambda *a, **k: (Emergencies(), False))
    rows = [{"text": f"孩子吃了住院了{i}", "category": "D", "severity": "critical"} for i in range(20)]
    rows += [{"text": f"东西一般般{i}", "category": "D", "severity": "low"} for i in range(80)]
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(__import__("json").dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "model" / "decision_policy.toml"
    assert main(["tune-policy", "--data", str(data), "--out", str(out), "--target-recall", "critical=0.95"]) == 0
    printed = capsys.readouterr().out
    assert "| policy_cross_fitted |" in printed and "wrote" in printed
    fitted = DecisionPolicy.for_model(out.parent)
    assert fitted.model_version == "emergencies-1" and fitted.fit["policy"]["critical_recall"] == 1.0
    assert fitted.fit["argmax"]["critical_recall"] == 0.0
    [decided] = fitted.decide(Emergencies().predict(["孩子吃了住院了"]), ["孩子吃了住院了"], "emergencies-1")
    assert decided.heads["severity"].label == "critical"
