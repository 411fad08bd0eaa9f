"""Micro-batching: ordering, one answer per caller, no needless wait, failures and timeouts per caller."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.micro_batcher import BatcherClosed, MicroBatcher
from helpdesk_triage.api.schemas import TriageRequest
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.api.admission import Overloaded
from helpdesk_triage.api.triage_service import TriageService
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.prediction import TextPrediction, one_label_distribution


class Recorder:
    """A model: upper-cases texts; records each call; can block until released; fails on 'boom'."""

    def __init__(self, block_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block_first:
            self.release.set()

    def __call__(self, key, texts):
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait(10)
        if any("boom" in t for t in texts):
            raise RuntimeError("boom")
        return [f"{key}:{t.upper()}" for t in texts]


@pytest.fixture
def batcher_factory():
    made = []

    def make(run, max_batch=32, max_wait_s=0.002, **kw):
        batcher = MicroBatcher(run, max_batch=max_batch, max_wait_s=max_wait_s, **kw)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close(timeout=5)


def busy(batcher_factory, key="m", **settings):
    """(model, batcher, first): a batcher whose model is busy with a first request, so that what is
    submitted next queues up until ``model.release`` is set."""
    model = Recorder(block_first=True)
    batcher = batcher_factory(model, **settings)
    first = batcher.submit(key, ["first"])
    assert model.started.wait(5)
    return model, batcher, first


def test_queued_requests_share_one_call_and_each_gets_its_own_answers(batcher_factory):
    sizes = []
    # The model is busy with the first request ...
    model, batcher, first = busy(batcher_factory, on_batch=lambda texts, jobs: sizes.append((texts, jobs)))
    jobs = [batcher.submit("m", [f"x{i}", f"y{i}"]) for i in range(5)]  # ... while five more queue up
    model.release.set()
    assert first.result(5) == ["m:FIRST"]
    for i, job in enumerate(jobs):
        assert job.result(5) == [f"m:X{i}", f"m:Y{i}"]  # in order, only its own
    assert model.calls == [["first"], [t for i in range(5) for t in (f"x{i}", f"y{i}")]]
    assert sizes == [(1, 1), (10, 5)]


def test_a_lone_request_does_not_wait(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_wait_s=2.0)
    for _ in range(3):
        started = time.perf_counter()
        assert batcher.submit("m", ["hi"]).result(5) == ["m:HI"]
        assert time.perf_counter() - started < 0.5  # nowhere near the 2 s gathering window
    assert model.calls == [["hi"]] * 3


def test_several_queued_wait_for_more_until_the_window_closes(batcher_factory):
    model, batcher, _ = busy(batcher_factory, max_wait_s=0.6)
    a, b = batcher.submit("m", ["a"]), batcher.submit("m", ["b"])
    model.release.set()  # a and b are taken together; more may come within 0.6 s of a's arrival
    time.sleep(0.15)
    c = batcher.submit("m", ["c"])
    assert [a.result(5), b.result(5), c.result(5)] == [["m:A"], ["m:B"], ["m:C"]]
    assert model.calls[1] == ["a", "b", "c"]


def test_batches_never_exceed_max_batch_and_jobs_are_never_split(batcher_factory):
    model, batcher, _ = busy(batcher_factory, max_batch=4)
    small = [batcher.submit("m", [f"s{i}"]) for i in range(6)]
    big = batcher.submit("m", [f"b{i}" for i in range(7)])  # bigger than max_batch: runs alone
    model.release.set()
    assert [f.result(5) for f in small] == [[f"m:S{i}"] for i in range(6)]
    assert big.result(5) == [f"m:B{i}" for i in range(7)]
    assert [len(c) for c in model.calls] == [1, 4, 2, 7]


def test_jobs_for_another_model_are_not_mixed(batcher_factory):
    model, batcher, _ = busy(batcher_factory, key="old")
    x, y, z = batcher.submit("old", ["x"]), batcher.submit("new", ["y"]), batcher.submit("new", ["z"])
    model.release.set()
    assert (x.result(5), y.result(5), z.result(5)) == (["old:X"], ["new:Y"], ["new:Z"])
    assert model.calls[1:] == [["x"], ["y", "z"]]


def test_a_failing_batch_fails_only_the_bad_request(batcher_factory):
    model, batcher, _ = busy(batcher_factory)
    good, bad, other = batcher.submit("m", ["ok"]), batcher.submit("m", ["boom"]), batcher.submit("m", ["fine"])
    model.release.set()
    assert good.result(5) == ["m:OK"] and other.result(5) == ["m:FINE"]
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(5)
    assert model.calls[1] == ["ok", "boom", "fine"]  # together first, then each alone


class Fatal(BaseException):
    """Not an Exception: gets past the model-failure handling to the worker's last line of defence."""


def test_a_broken_model_fails_every_caller_and_the_worker_survives(batcher_factory):
    def broken(key, texts):
        raise Fatal("the runtime died")

    batcher = batcher_factory(broken)
    for _ in range(2):  # the second call proves the worker thread is still there
        with pytest.raises(Fatal):
            batcher.submit("m", ["a"]).result(5)
    wrong_count = batcher_factory(lambda key, texts: ["only one"])
    with pytest.raises(RuntimeError, match="1 results for 2 texts"):
        wrong_count.submit("m", ["a", "b"]).result(5)


def test_a_caller_that_gave_up_is_skipped(batcher_factory):
    model, batcher, _ = busy(batcher_factory)
    gone = batcher.submit("m", ["gone"])
    with pytest.raises(TimeoutError):
        gone.result(timeout=0.05)
    assert gone.cancel()  # still queued: cancelled, never runs
    kept = batcher.submit("m", ["kept"])
    model.release.set()
    assert kept.result(5) == ["m:KEPT"]
    assert ["gone"] not in model.calls and all("gone" not in call for call in model.calls)


def test_close_cancels_queued_jobs_and_refuses_new_ones(batcher_factory):
    model, batcher, running = busy(batcher_factory)
    queued = batcher.submit("m", ["queued"])
    batcher.close()
    with pytest.raises(CancelledError):
        queued.result(1)
    with pytest.raises(BatcherClosed):
        batcher.submit("m", ["late"])
    model.release.set()
    assert running.result(5) == ["m:FIRST"]  # the batch that was running still answers


# --------------------------------------------------------------------------------------------
# in the service: time budget and degraded answers per caller
# --------------------------------------------------------------------------------------------


class SlowRules:
    """The keyword rules, each call ``delay`` s late and recorded; fails on texts containing '炸'."""

    version = "slow-rules-1"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.rules = KeywordClassifier()

    def predict(self, texts):
        self.calls.append(list(texts))
        time.sleep(self.delay)
        if any("炸" in t for t in texts):
            raise RuntimeError("model crashed")
        # the rules' labels with a confident distribution: the decision policy then keeps them (expected cost)
        return [TextPrediction(**{h: one_label_distribution(h, p.head(h).label, 0.9) for h in HEADS})
                for p in self.rules.predict(texts)]


def service(classifier, **settings) -> TriageService:
    return TriageService(Settings(database_url="sqlite:///:memory:", **settings), open_store("sqlite:///:memory:"),
                         classifier=classifier)


def triage_concurrently(svc: TriageService, texts: list[str]) -> list:
    results: list = [None] * len(texts)

    def one(i: int) -> None:
        results[i] = svc.triage(TriageRequest(text=texts[i], id=f"r-{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_requests_are_batched_and_answered_individually():
    model = SlowRules(0.1)
    svc = service(model, batch_wait_ms=50)
    texts = ["我的快递到哪了", "收到的杯子碎了", "再不发货我就投诉", "有货吗"] * 3
    try:
        results = triage_concurrently(svc, texts)
    finally:
        svc.close()
    expected = [p.category.label for p in KeywordClassifier().predict(texts)]
    assert [r.category.label for r in results] == expected and [r.id for r in results] == [f"r-{i}" for i in range(12)]
    assert all(not r.degraded and r.model_version == "slow-rules-1" for r in results)
    assert len(model.calls) < len(texts)  # shared calls
    assert sorted(t for call in model.calls for t in call) == sorted(texts)


def test_a_failed_batch_degrades_each_of_its_callers_not_the_others():
    model = SlowRules(0.1)
    svc = service(model, batch_wait_ms=50)
    try:
        results = triage_concurrently(svc, ["我的快递到哪了", "手机爆炸了", "收到的杯子碎了", "有货吗"])
    finally:
        svc.close()
    assert [r.degraded for r in results] == [False, True, False, False]
    assert results[1].model_version == "keyword-rules-1"
    assert results[1].review_reasons[0] == "degraded: the model failed (RuntimeError); answered by keyword rules"


def test_a_model_call_already_running_at_the_budget_gets_as_long_again():
    model = SlowRules(0.3)  # slower than the 200 ms budget, within twice it
    svc = service(model, request_timeout_ms=200)
    try:
        response = svc.triage(TriageRequest(text="收到的杯子碎了", id="slow-1"))
    finally:
        svc.close()
    assert response.degraded is False and response.model_version == model.version
    assert svc.metrics.degraded.labels(reason="timeout")._value.get() == 0


def test_callers_past_their_time_budget_are_degraded_or_refused_each():
    """Past the budget, texts the model was running are answered by the keyword rules (a hung model);
    texts still waiting in the queue are refused (Overloaded: 503, retry on the model). Nobody waits longer."""
    model = SlowRules(1.0)
    svc = service(model, request_timeout_ms=200)
    results: list = [None] * 3

    def one(i: int) -> None:
        try:
            results[i] = svc.triage(TriageRequest(text=["我的快递到哪了", "收到的杯子碎了", "有货吗"][i], id=f"r-{i}"))
        except Overloaded as refused:
            results[i] = refused

    started = time.monotonic()
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        svc.close()
    assert time.monotonic() - started < 0.9  # nobody waited for the slow model (budget, and as long again if running)
    answered = [r for r in results if not isinstance(r, Overloaded)]
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert answered and len(answered) + len(refused) == 3
    assert all(r.degraded for r in answered)
    assert all(r.review_reasons[0] == "degraded: the model did not answer within 400 ms; answered by keyword rules"
               for r in answered)
    assert all("did not reach these texts within 200 ms" in r.message for r in refused)
    assert svc.metrics.degraded.labels(reason="timeout")._value.get() == len(answered)
    assert svc.metrics.rejected.labels(reason="queue_timeout")._value.get() == len(refused)
