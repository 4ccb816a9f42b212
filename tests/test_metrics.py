"""Filter metrics and the seed spread, against values computed by hand."""
import numpy as np
import pytest

from news_probes.io import InputError
from news_probes.metrics import filter_config, filter_metrics, ndcg, seed_spread

DIMS = ["a", "b"]
# Weighted (equal weights) true scores 8, 6, 4.5, 2, 0: three reach the threshold 4.5; tiers high, high, medium,
# low, low.
TRUTH = np.array([[8.0, 8.0], [6.0, 6.0], [5.0, 4.0], [2.0, 2.0], [0.0, 0.0]])


def config(**changes):
    return filter_config({"filter": changes}, DIMS)


def test_defaults_are_equal_weights_the_study_threshold_and_tiers():
    assert config() == {"weights": {"a": 1.0, "b": 1.0}, "threshold": 4.5, "tiers": {"high": 6.0, "medium": 3.0}}
    assert config(weights={"b": 2})["weights"] == {"a": 0.0, "b": 2.0}   # unnamed dimensions weigh nothing


def test_exact_predictions_filter_perfectly():
    f = filter_metrics(TRUTH, TRUTH, DIMS, config(), (0, 10))
    assert (f["precision"], f["recall"], f["f1"], f["false_negative_rate"]) == (1.0, 1.0, 1.0, 0.0)
    assert f["weighted_mae"] == 0 and f["bias"] == {"a": 0.0, "b": 0.0} and f["positives"] == 3
    assert f["confusion"] == {"high": {"high": 2, "medium": 0, "low": 0}, "medium": {"high": 0, "medium": 1, "low": 0},
                              "low": {"high": 0, "medium": 0, "low": 2}}
    assert f["tier_recall"] == {"high": 1.0, "medium": 1.0, "low": 1.0} and f["ndcg_at_10pct"] == 1.0


def test_a_constant_offset_is_the_bias_and_a_negative_one_loses_recall():
    low = filter_metrics(TRUTH, TRUTH - 0.5, DIMS, config(), (0, 10))
    # Weighted predictions 7.5, 5.5, 4, 1.5, -0.5: the 4.5 article falls below the threshold, 5.5 to medium.
    assert low["bias"] == {"a": pytest.approx(-0.5), "b": pytest.approx(-0.5)}
    assert low["weighted_mae"] == pytest.approx(0.5)
    assert (low["precision"], low["recall"]) == (1.0, pytest.approx(2 / 3))
    assert low["f1"] == pytest.approx(0.8) and low["false_negative_rate"] == pytest.approx(1 / 3)
    assert low["confusion"]["high"] == {"high": 1, "medium": 1, "low": 0} and low["tier_recall"]["high"] == 0.5
    recalls = [filter_metrics(TRUTH, TRUTH + offset, DIMS, config(), (0, 10))["recall"]
               for offset in (0.0, -0.5, -1.0, -2.5, -6.0)]
    assert recalls == [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(1 / 3), 0.0]
    high = filter_metrics(TRUTH, TRUTH + 3.0, DIMS, config(), (0, 10))
    assert high["recall"] == 1.0 and high["precision"] == pytest.approx(3 / 4)   # 2 + 3 = 5 now passes


def test_weights_decide_what_passes():
    # Only b counts: article 2's weighted score is 4, below 4.5.
    f = filter_metrics(TRUTH, TRUTH, DIMS, config(weights={"b": 1}), (0, 10))
    assert f["positives"] == 2


def test_ndcg_by_hand():
    truth = np.array([8.0, 6.0, 4.5, 2.0, 0.0])
    # Top 40% = 2 articles; predicted order puts article 1 (gain 6) then 3 (gain 2) first.
    expected = (6 / np.log2(2) + 2 / np.log2(3)) / (8 / np.log2(2) + 6 / np.log2(3))
    assert ndcg(truth, np.array([1.0, 9.0, 2.0, 3.0, 0.0]), 0.4, 0.0) == pytest.approx(expected)
    assert ndcg(truth, truth, 0.4, 0.0) == 1.0


def test_seed_spread_by_hand():
    truth = np.array([[1.0], [2.0]])
    spread = seed_spread(truth, [np.array([[1.0], [3.0]]), np.array([[2.0], [4.0]])])
    assert spread["mae"] == [0.5, 1.5] and spread["mean"] == 1.0 and spread["n"] == 2
    assert spread["sd"] == pytest.approx(np.sqrt(0.5)) and (spread["min"], spread["max"]) == (0.5, 1.5)


@pytest.mark.parametrize("section, field, message", [
    ({"weights": {"c": 1}}, "filter.weights.c", "no dimension 'c' in the data"),
    ({"weights": {"a": -1}}, "filter.weights.a", "must be a number >= 0"),
    ({"weights": {"a": 0}}, "filter.weights", "at least one weight must be above 0"),
    ({"tiers": {"high": 2, "medium": 3}}, "filter.tiers", "medium below high"),
    ({"threshold": "high"}, "filter.threshold", "must be a number"),
    ({"treshold": 4}, "filter", "unknown keys"),
])
def test_bad_filter_settings_name_their_field(section, field, message):
    with pytest.raises(InputError, match=message) as err:
        filter_config({"filter": section}, DIMS)
    assert err.value.field == field
