import pytest

from news_probes import timing


def test_latency_times_single_items_and_one_batch_per_item(monkeypatch):
    clock, calls = [0.0], []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def predict(items):                       # takes 2 ms per item and 5 ms per call, on a simulated clock
        calls.append(len(items))
        clock[0] += 0.005 + 0.002 * len(items)

    result = timing.latency(predict, list(range(6)), repeats=4)
    assert calls == [1, 1, 1, 1, 1, 6]         # a warm-up (not timed), `repeats` single items, then one batch
    assert result["single"] == pytest.approx(0.007)
    assert result["batched"] == pytest.approx((0.005 + 0.012) / 6)
    assert timing.latency_ms(predict, list(range(6)), repeats=4) == {"single": 7.0, "batched": 2.8333}
