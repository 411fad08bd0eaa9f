"""Admission by texts: the capacity follows the model's measured rate, within the configured cap."""

import pytest

from helpdesk_triage.api.admission import BUDGET_SHARE, MIN_RATE_TEXTS, Admission, Overloaded


def test_until_the_rate_is_known_the_cap_alone_applies():
    admission = Admission(max_requests=8, max_queued_texts=100, budget_s=5.0)
    admission.observe_model_call(MIN_RATE_TEXTS - 1, 0.01)  # too few texts to trust a rate
    assert admission.rate is None and admission.text_capacity == 100


def test_capacity_is_what_the_model_answers_within_the_budget():
    admission = Admission(max_requests=8, max_queued_texts=10_000, budget_s=5.0)
    for _ in range(4):
        admission.observe_model_call(32, 0.2)  # 160 texts/s
    assert admission.rate == pytest.approx(160)
    assert admission.text_capacity == int(160 * 5.0 * BUDGET_SHARE)
    admission = Admission(max_requests=8, max_queued_texts=300, budget_s=5.0)
    for _ in range(4):
        admission.observe_model_call(32, 0.2)
    assert admission.text_capacity == 300  # the cap still holds


def test_texts_are_admitted_until_full_and_refused_with_the_time_to_drain():
    admission = Admission(max_requests=8, max_queued_texts=10_000, budget_s=1.0, min_retry_after_s=1)
    for _ in range(4):
        admission.observe_model_call(50, 1.0)  # 50 texts/s: 35 texts fit in 0.7 s
    admission.admit_texts(30)
    with pytest.raises(Overloaded) as refused:
        admission.admit_texts(10)
    assert refused.value.retry_after_s == 1  # 30 texts at 50/s
    assert admission.try_enter_request()  # 30 < 35: requests still enter
    admission.leave_request()
    admission.admit_texts(5)
    assert admission.try_enter_request() is False  # full: refused before the body is read
    admission.release_texts(35)
    assert admission.texts_in_flight == 0


def test_one_request_alone_is_admitted_whatever_its_size():
    admission = Admission(max_requests=1, max_queued_texts=16, budget_s=1.0)
    admission.admit_texts(64)  # bigger than the capacity, but nothing else waits: it must be able to run
    with pytest.raises(Overloaded):
        admission.admit_texts(1)


def test_request_gate_counts_requests():
    admission = Admission(max_requests=2, max_queued_texts=100, budget_s=1.0)
    assert admission.try_enter_request() and admission.try_enter_request()
    assert not admission.try_enter_request()
    admission.leave_request()
    assert admission.try_enter_request()
