"""lib.limits.ratelimit against a real Redis: exact rpm/tpm/budget under concurrency, settle/release, periods, expiry,
headers, and Redis outages. The ``run_*`` scenarios are reused against a Redis Cluster in
test_ratelimit_cluster.py."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from lib import store as redis_store
from lib.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from lib.accounting.money import usd_text as usd
from lib.limits.ratelimit import FailMode, Limiter, Reservation, format_duration, period_bounds

T0 = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    """A hand-moved clock (seconds since the epoch)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_key() -> str:
    return f"k_{uuid.uuid4().hex[:12]}"


# -- scenarios shared with the cluster tests ------------------------------------------------------------
def make_client(spec: tuple[str, Any]) -> Any:
    """A fresh client from a picklable spec: ("url", url) or ("cluster", [ports])."""
    kind, where = spec
    if kind == "url":
        return redis_store.connect(where)
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in where])


def _rpm_worker(spec: tuple[str, Any], prefix: str, key_id: str, n: int, ready: Any, start: Any, out: Any) -> None:
    """Child process: ``n`` reservations as fast as possible once every process is ready; reports
    (ok, retry_afters, unexpected errors, (first, last) call time)."""
    client = make_client(spec)
    limiter = Limiter(client, prefix=prefix)
    limiter.reserve(f"{key_id}-warm", rpm=100)  # connected and the script loaded before the race
    ok, retries, other = 0, [], []
    ready.wait(30)
    while start.value == 0 or time.time() < start.value:  # both processes leave at the same instant
        pass
    first = time.time()
    for _ in range(n):
        try:
            limiter.reserve(key_id, rpm=10, tokens=1, request_id=uuid.uuid4().hex)
            ok += 1
        except RateLimited as exc:
            retries.append(exc.retry_after)
        except Exception as exc:  # reported to the parent, which fails the test
            other.append(repr(exc))
    out.put((ok, retries, other, (first, time.time())))
    client.close()


def run_rpm_two_processes(spec: tuple[str, Any], prefix: str) -> None:
    """40 reservations, rpm=10, from 2 OS processes sharing the store: exactly 10 pass."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, out, key_id = ctx.Barrier(3), ctx.Value("d", 0.0), ctx.Queue(), new_key()
    procs = [ctx.Process(target=_rpm_worker, args=(spec, prefix, key_id, 20, ready, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    ready.wait(30)  # both children are connected and waiting
    start.value = time.time() + 0.05
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert [r[2] for r in results] == [[], []]
    assert sum(r[0] for r in results) == 10
    retries = [ra for r in results for ra in r[1]]
    assert len(retries) == 30
    assert all(1 <= ra <= 60 for ra in retries), retries


def run_budget_threads(client: Any, prefix: str) -> None:
    """20 threads against a budget of exactly 5 worst-case costs: exactly 5 pass; spent+reserved never exceeds it."""
    limiter = Limiter(client, prefix=prefix)
    key_id, cost, budget = new_key(), 1_000, 5_000
    violations: list[tuple[int, int]] = []
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            st = limiter.budget_status(key_id, budget, "monthly")
            if st["spent_micros"] + st["reserved_micros"] > budget:
                violations.append((st["spent_micros"], st["reserved_micros"]))

    def burst(n: int) -> tuple[list[Reservation], int]:
        ok: list[Reservation] = []
        refused: list[int] = []
        barrier = threading.Barrier(n)
        lock = threading.Lock()

        def one() -> None:
            barrier.wait()
            try:
                res = limiter.reserve(key_id, budget_micros=budget, budget_period="monthly", cost_micros=cost,
                                      request_id=uuid.uuid4().hex)
                with lock:
                    ok.append(res)
            except BudgetExceeded as exc:
                assert exc.status == 429 and exc.code == "budget_exceeded" and exc.type == "insufficient_quota"
                assert exc.retry_after is not None and exc.retry_after >= 1  # monthly: until the 1st
                with lock:
                    refused.append(1)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return ok, len(refused)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        ok, refused = burst(20)
        assert (len(ok), refused) == (5, 15)
        st = limiter.budget_status(key_id, budget, "monthly")
        assert (st["spent_micros"], st["reserved_micros"], st["remaining_micros"]) == (0, 5_000, 0)
        for res in ok:  # each really cost 400 of its 1000 hold
            limiter.settle(res, actual_tokens=0, actual_cost_micros=400)
        st = limiter.budget_status(key_id, budget, "monthly")
        assert (st["spent_micros"], st["reserved_micros"], st["remaining_micros"]) == (2_000, 0, 3_000)
        ok2, refused2 = burst(20)  # 3,000 left: exactly three more worst-case holds fit
        assert (len(ok2), refused2) == (3, 17)
        for res in ok2:
            limiter.settle(res, actual_tokens=0, actual_cost_micros=1_000)
            limiter.settle(res, actual_tokens=0, actual_cost_micros=1_000)  # twice: charged once
    finally:
        stop.set()
        watcher.join(10)
    st = limiter.budget_status(key_id, budget, "monthly")
    assert (st["spent_micros"], st["reserved_micros"], st["remaining_micros"]) == (5_000, 0, 0)
    assert violations == []


def run_tpm_settle_frees(client: Any, prefix: str, clock: Callable[[], float] | None = None) -> None:
    """A reservation that does not fit tpm is refused; settling a smaller actual usage frees the difference."""
    limiter = Limiter(client, prefix=prefix, clock=clock)
    key_id = new_key()
    first = limiter.reserve(key_id, tpm=1_000, tokens=800, request_id="a")
    assert (first.limit_tokens, first.remaining_tokens) == (1_000, 200)
    with pytest.raises(RateLimited) as info:
        limiter.reserve(key_id, tpm=1_000, tokens=300, request_id="b")
    assert info.value.retry_after >= 1
    assert "tokens per minute (TPM): limit 1000, used 800, requested 300" in info.value.message
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "200"
    limiter.settle(first, actual_tokens=500, actual_cost_micros=None)
    second = limiter.reserve(key_id, tpm=1_000, tokens=300, request_id="b")
    assert second.remaining_tokens == 200
    with pytest.raises(RateLimited):
        limiter.reserve(key_id, tpm=1_000, tokens=201, request_id="c")
    limiter.settle(second, actual_tokens=350, actual_cost_micros=None)  # more than reserved: counted in full
    with pytest.raises(RateLimited):
        limiter.reserve(key_id, tpm=1_000, tokens=151, request_id="d")
    assert limiter.reserve(key_id, tpm=1_000, tokens=150, request_id="d").remaining_tokens == 0


# -- single Redis ---------------------------------------------------------------------------------------
def test_rpm_is_exact_across_two_processes(redis_url, key_prefix):
    run_rpm_two_processes(("url", redis_url), key_prefix)


def test_budget_is_exact_under_concurrent_threads(redis_client, key_prefix):
    run_budget_threads(redis_client, key_prefix)


def test_tpm_refuses_then_settle_frees_tokens(redis_client, key_prefix):
    run_tpm_settle_frees(redis_client, key_prefix, clock=Clock())


def test_tpm_with_redis_time(redis_client, key_prefix):
    run_tpm_settle_frees(redis_client, key_prefix, clock=None)


def test_request_larger_than_tpm_is_refused_without_retry_after(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k_big", tpm=100, tokens=101)
    assert info.value.retry_after is None
    assert info.value.message.startswith("Request too large for key k_big on tokens per minute (TPM): limit 100")
    assert redis_client.exists(*limiter.key_names("k_big")) == 0


def test_window_slides_and_retry_after_counts_to_the_oldest_entry(redis_client, key_prefix):
    clock = Clock()
    limiter = Limiter(redis_client, prefix=key_prefix, clock=clock)
    for i in range(3):
        limiter.reserve("k_1", rpm=3, request_id=f"r{i}")
        clock.now += 10
    clock.now = T0 + 25  # entries at 0, 10, 20 s
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k_1", rpm=3, request_id="r3")
    assert info.value.retry_after == 35  # the entry at 0 leaves at 60
    assert info.value.response_headers()["Retry-After"] == "35"
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.headers["x-ratelimit-reset-requests"] == "35s"
    clock.now = T0 + 59.9
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k_1", rpm=3, request_id="r3")
    assert info.value.retry_after == 1  # 100 ms, rounded up to the 1 s minimum
    clock.now = T0 + 60
    res = limiter.reserve("k_1", rpm=3, request_id="r3")
    assert (res.remaining_requests, res.reset_requests_s) == (0, 10.0)  # the entry at 10 s leaves next


def test_refused_request_records_nothing(redis_client, key_prefix):
    clock = Clock()
    limiter = Limiter(redis_client, prefix=key_prefix, clock=clock)
    limiter.reserve("k_1", rpm=1, tpm=50, tokens=10, budget_micros=100, cost_micros=60, request_id="a")
    for kwargs in ({"tokens": 10, "cost_micros": 10}, {"tokens": 45, "cost_micros": 10}, {"cost_micros": 50}):
        with pytest.raises((RateLimited, BudgetExceeded)):
            limiter.reserve("k_1", rpm=1, tpm=50, budget_micros=100, request_id="b", **{"tokens": 0, **kwargs})
    log, tok, budget, holds, _ = limiter.key_names("k_1")
    assert redis_client.zcard(log) == 1 and int(redis_client.get(tok)) == 10
    assert redis_client.zcard(holds) == 1 and int(redis_client.hget(budget, "held")) == 60


def test_same_request_id_is_counted_once(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    limiter.reserve("k_1", rpm=5, tpm=100, tokens=10, budget_micros=100, cost_micros=10, request_id="same")
    res = limiter.reserve("k_1", rpm=5, tpm=100, tokens=10, budget_micros=100, cost_micros=10, request_id="same")
    assert (res.remaining_requests, res.remaining_tokens, res.budget_reserved_micros) == (4, 90, 10)


def test_daily_budget_resets_at_utc_midnight(redis_client, key_prefix):
    clock = Clock(datetime(2026, 3, 15, 23, 59, 58, tzinfo=timezone.utc).timestamp())
    limiter = Limiter(redis_client, prefix=key_prefix, clock=clock)
    kw = dict(budget_micros=2_500_000, budget_period="daily", cost_micros=1_000_000)
    for i in range(2):
        limiter.settle(limiter.reserve("k_1", request_id=f"r{i}", **kw), actual_tokens=0,
                       actual_cost_micros=1_000_000)
    with pytest.raises(BudgetExceeded) as info:
        limiter.reserve("k_1", request_id="r2", **kw)
    err = info.value
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "budget_exceeded")
    assert err.retry_after == 2 and err.response_headers()["Retry-After"] == "2"
    assert err.message == ("Budget exceeded for key k_1: daily budget $2.50, spent $2.00, reserved by requests in "
                           "progress $0.00; this request could cost up to $1.00. The budget resets at "
                           "2026-03-16T00:00:00Z.")
    clock.now += 2  # 00:00:00 UTC
    res = limiter.reserve("k_1", request_id="r2", **kw)
    assert (res.period_id, res.budget_spent_micros, res.budget_remaining_micros) == ("d2026-03-16", 0, 1_500_000)
    assert limiter.budget_status("k_1", 2_500_000, "daily")["resets_at"] == "2026-03-17T00:00:00Z"
    yesterday = limiter.key_names("k_1", "d2026-03-15")[2]
    assert int(redis_client.hget(yesterday, "spent")) == 2_000_000
    assert 0 < redis_client.pttl(yesterday) <= (2 * 86400 + 3) * 1000  # counters of a period do not linger


def test_total_budget_has_no_retry_after(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    limiter.reserve("k_1", budget_micros=1_000, cost_micros=1_000, request_id="a")
    with pytest.raises(BudgetExceeded) as info:
        limiter.reserve("k_1", budget_micros=1_000, cost_micros=1, request_id="b")
    assert info.value.retry_after is None and "Retry-After" not in info.value.response_headers()
    assert "A total budget does not reset" in info.value.message
    assert redis_client.ttl(limiter.key_names("k_1")[2]) == -1


def test_period_bounds():
    dec = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc).timestamp()
    assert period_bounds("monthly", dec) == ("m2026-12", datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert period_bounds("daily", dec) == ("d2026-12-31", datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert period_bounds("total", dec) == ("total", None)
    with pytest.raises(ValueError):
        period_bounds("weekly", dec)


def test_unsettled_hold_lapses_and_a_late_settle_charges_once(redis_client, key_prefix, caplog):
    clock = Clock()
    limiter = Limiter(redis_client, prefix=key_prefix, clock=clock, hold_ttl_s=30)
    kw = dict(budget_micros=1_000, budget_period="daily", cost_micros=1_000)
    crashed = limiter.reserve("k_1", request_id="crashed", **kw)
    with pytest.raises(BudgetExceeded):
        limiter.reserve("k_1", request_id="b", **kw)
    clock.now += 29.9
    with pytest.raises(BudgetExceeded):
        limiter.reserve("k_1", request_id="b", **kw)
    clock.now += 0.2  # the hold lapsed: its process is presumed dead
    later = limiter.reserve("k_1", request_id="b", **kw)
    assert later.budget_reserved_micros == 1_000
    with caplog.at_level(logging.WARNING, logger="aiproxy.ratelimit"):
        limiter.settle(crashed, actual_tokens=0, actual_cost_micros=300)  # it was alive after all
    assert "after its budget hold had lapsed" in caplog.text
    limiter.settle(crashed, actual_tokens=0, actual_cost_micros=300)
    st = limiter.budget_status("k_1", 1_000, "daily")
    assert (st["spent_micros"], st["reserved_micros"]) == (300, 1_000)


def test_release_refunds_budget_and_tokens_but_keeps_the_request(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    kw = dict(rpm=2, tpm=100, tokens=100, budget_micros=500, cost_micros=500)
    res = limiter.reserve("k_1", request_id="a", **kw)
    limiter.release(res)
    limiter.release(res)
    limiter.settle(res, actual_tokens=100, actual_cost_micros=500)  # after release: no effect
    again = limiter.reserve("k_1", request_id="b", **kw)
    assert (again.remaining_requests, again.remaining_tokens, again.budget_spent_micros) == (0, 0, 0)
    with pytest.raises(RateLimited):
        limiter.reserve("k_1", request_id="c", **{**kw, "tokens": 0, "cost_micros": 0})


def test_settle_without_a_price_charges_the_reserved_worst_case(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    res = limiter.reserve("k_1", budget_micros=10_000, cost_micros=1_234, request_id="a")
    limiter.settle(res, actual_tokens=10, actual_cost_micros=None)
    assert limiter.budget_status("k_1", 10_000)["spent_micros"] == 1_234


def test_token_sum_is_rebuilt_when_it_drifts(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    limiter.reserve("k_1", tpm=100, tokens=60, request_id="a")
    redis_client.delete(limiter.key_names("k_1")[1])  # e.g. evicted on its own
    with pytest.raises(RateLimited):
        limiter.reserve("k_1", tpm=100, tokens=41, request_id="b")
    assert limiter.reserve("k_1", tpm=100, tokens=40, request_id="b").remaining_tokens == 0


def test_redis_time_window_with_a_short_window(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, window_s=1)
    limiter.reserve("k_1", rpm=2)
    limiter.reserve("k_1", rpm=2)
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k_1", rpm=2)
    assert "requests per 1 s (RPM)" in info.value.message and info.value.retry_after == 1
    time.sleep(1.05)
    assert limiter.reserve("k_1", rpm=2).remaining_requests == 1


def test_keys_share_one_cluster_slot_and_reject_braces(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix)
    names = limiter.key_names("k_3f9a", "d2026-03-15")
    assert names[0] == f"{key_prefix}rl:{{k_3f9a}}:req"
    assert names[2] == f"{key_prefix}rl:{{k_3f9a}}:budget:d2026-03-15"
    assert len({key_slot(n.encode()) for n in names}) == 1
    with pytest.raises(ValueError):
        limiter.key_names("k_{x}")
    with pytest.raises(ValueError):
        Limiter(redis_client, prefix="{app}:")


def test_format_duration_matches_openai():
    cases = {0: "0s", 0.02: "20ms", 0.999: "999ms", 1: "1s", 8.64: "8.64s", 59.999: "59.999s", 60: "1m0s",
             82.56: "1m22.56s", 360: "6m0s", 3600: "1h0m0s", 3725.5: "1h2m5.5s", -3: "0s"}
    assert {k: format_duration(k) for k in cases} == cases
    assert usd(2_500_000) == "$2.50" and usd(125) == "$0.000125" and usd(0) == "$0.00"


def test_headers_only_for_the_limits_a_key_has(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    res = limiter.reserve("k_1", rpm=60, tokens=5, request_id="a")
    assert res.headers() == {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
                             "x-ratelimit-reset-requests": "1m0s"}
    res = limiter.reserve("k_2", tpm=1000, tokens=5, request_id="a")
    assert res.headers() == {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "995",
                             "x-ratelimit-reset-tokens": "1m0s"}
    assert limiter.reserve("k_3", budget_micros=10, cost_micros=1).headers() == {}


def _dead_client() -> redis.Redis:
    port = redis_store.free_port()  # nothing listens there; no retries, so the test stays fast
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))


def test_store_down_raises_service_unavailable():
    limiter = Limiter(_dead_client(), prefix="x:")
    with pytest.raises(ServiceUnavailable) as info:
        limiter.reserve("k_1", rpm=10)
    assert (info.value.status, info.value.code) == (503, "service_unavailable")
    assert "rate-limit store is unreachable" in info.value.message
    assert isinstance(info.value.__cause__, redis.RedisError)
    real = Reservation(key_id="k_1", request_id="a", tracked_window=True)
    with pytest.raises(ServiceUnavailable):
        limiter.settle(real, actual_tokens=1, actual_cost_micros=0)
    assert limiter.reserve("k_1").headers() == {}  # no limits: no round trip, so no outage either


def test_fail_open_degrades_and_fail_closed_refuses(caplog):
    limiter = Limiter(_dead_client(), prefix="x:")
    seen: list[Exception] = []
    with caplog.at_level(logging.ERROR, logger="aiproxy.ratelimit"):
        res = limiter.reserve_or_degrade("k_1", fail_mode="fail-open", on_degraded=seen.append, rpm=10,
                                         tokens=7, request_id="r1")
    assert res.degraded and res.headers() == {} and (res.request_id, res.tokens) == ("r1", 7)
    assert len(seen) == 1 and isinstance(seen[0], ServiceUnavailable)
    assert any(r.levelno == logging.ERROR and "fail-open" in r.getMessage() for r in caplog.records)
    limiter.settle(res, actual_tokens=7, actual_cost_micros=5)  # ignored: no Redis call, no error
    limiter.release(res)

    def broken_hook(exc: Exception) -> None:
        raise RuntimeError("metrics down")

    assert limiter.reserve_or_degrade("k_1", fail_mode=FailMode.OPEN, on_degraded=broken_hook, rpm=1).degraded
    with pytest.raises(ServiceUnavailable):
        limiter.reserve_or_degrade("k_1", fail_mode="fail-closed", on_degraded=seen.append, rpm=10)
    assert len(seen) == 1
    with pytest.raises(ValueError):
        limiter.reserve_or_degrade("k_1", fail_mode="fail-sideways", rpm=1)


def test_limit_errors_pass_through_fail_open(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix, clock=Clock())
    limiter.reserve_or_degrade("k_1", fail_mode="fail-open", rpm=1)
    with pytest.raises(RateLimited):
        limiter.reserve_or_degrade("k_1", fail_mode="fail-open", rpm=1)


def test_bad_arguments(redis_client, key_prefix):
    limiter = Limiter(redis_client, prefix=key_prefix)
    with pytest.raises(ValueError):
        limiter.reserve("k_1", rpm=-1)
    with pytest.raises(ValueError):
        limiter.reserve("k_1", budget_micros=5, budget_period="weekly")
    res = limiter.reserve("k_1", rpm=5)
    with pytest.raises(ValueError):
        limiter.settle(res, actual_tokens=-1, actual_cost_micros=0)
