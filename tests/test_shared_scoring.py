import pytest

from carla_eval import scoring


def _inf(**kw):
    d = scoring.empty_infractions()
    d.update(kw)
    return d


def test_penalties_multiply_under_lb20():
    inf = _inf(
        collisions_vehicle=["a", "b"],
        collisions_layout=["c"],
        outside_route_lanes=[scoring.msg_outside_lanes(12.0, 10.0)],
    )
    ip = scoring.penalty_factor(inf)
    assert ip == pytest.approx(0.6 * 0.6 * 0.65 * 0.9)
    s = scoring.route_scores(80.0, inf)
    assert s["score_composed"] == pytest.approx(80.0 * ip)


def test_lb21_adds_weights_and_matches_single_event():
    one = _inf(collisions_vehicle=["a"])
    assert scoring.penalty_factor(one, "2.1") == pytest.approx(0.6)
    two = _inf(collisions_vehicle=["a", "b"])
    w = 1 / 0.6 - 1
    assert scoring.penalty_factor(two, "2.1") == pytest.approx(1 / (1 + 2 * w))


def test_min_speed_only_when_enabled():
    inf = _inf(min_speed_infractions=[scoring.msg_min_speed(50.0)])
    assert scoring.penalty_factor(inf) == 1.0
    assert scoring.penalty_factor(inf, apply_min_speed=True) == pytest.approx(1 - 0.3 * 0.5)


def test_unknown_key_and_formula_raise():
    with pytest.raises(KeyError, match="collisions_car"):
        scoring.penalty_factor({"collisions_car": ["x"]})
    with pytest.raises(ValueError, match="formula"):
        scoring.penalty_factor(_inf(), "3.0")
    with pytest.raises(ValueError, match="route completion"):
        scoring.route_scores(120.0, _inf())


def test_message_percentage_parses_leaderboard_sentences():
    assert scoring.message_percentage(scoring.msg_min_speed(87.5)) == pytest.approx(87.5)
    assert scoring.message_percentage(scoring.msg_outside_lanes(3.0, 4.25)) == pytest.approx(4.25)
    with pytest.raises(ValueError):
        scoring.message_percentage("no number here")


def test_status_and_success():
    clean = _inf(min_speed_infractions=[scoring.msg_min_speed(90.0)])
    assert scoring.final_status(100.0, clean, None) == scoring.STATUS_PERFECT
    hit = _inf(collisions_vehicle=["x"])
    assert scoring.final_status(100.0, hit, None) == scoring.STATUS_COMPLETED
    assert scoring.final_status(40.0, clean, None) == scoring.STATUS_FAILED
    assert scoring.final_status(40.0, clean, scoring.STATUS_BLOCKED) == scoring.STATUS_BLOCKED
    assert scoring.is_success(scoring.STATUS_PERFECT, clean)
    assert not scoring.is_success(scoring.STATUS_COMPLETED, hit)
    assert not scoring.is_success(scoring.STATUS_BLOCKED, clean)
