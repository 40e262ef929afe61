import pytest

from carla_eval.routes import (
    RouteFileError,
    parse_routes_file,
    parse_subset,
    routes_fingerprint,
    select_routes,
    write_routes_file,
)

GOOD = """<?xml version='1.0'?>
<routes>
  <route id="0" town="highway">
    <waypoints><position x="0" y="4" z="0"/><position x="200" y="4" z="0"/></waypoints>
    <scenarios>
      <scenario name="HardBrake_1" type="HardBrake">
        <trigger_point x="50" y="4" z="0" yaw="0"/>
        <decel value="7.5"/>
      </scenario>
    </scenarios>
  </route>
  <route id="1" town="merge">
    <waypoints><position x="0" y="0"/></waypoints>
  </route>
  <route id="2" town="roundabout">
    <waypoints><position x="0" y="0"/><position x="abc" y="1"/></waypoints>
  </route>
  <route id="3" town="racetrack">
    <waypoints><position x="0" y="0"/><position x="10" y="1"/></waypoints>
  </route>
</routes>
"""


def test_parse_keeps_bad_routes_with_an_error(tmp_path):
    f = tmp_path / "r.xml"
    f.write_text(GOOD)
    routes = parse_routes_file(f)
    assert [r.route_id for r in routes] == ["0", "1", "2", "3"]
    r0 = routes[0]
    assert r0.error is None and r0.town == "highway" and len(r0.waypoints) == 2
    assert r0.scenario_type == "HardBrake" and r0.scenarios[0].param("decel") == "7.5"
    assert r0.scenarios[0].trigger == (50.0, 4.0, 0.0, 0.0)
    assert r0.record_id(2) == "RouteScenario_0_rep2"
    assert "at least 2" in routes[1].error
    assert "not a number" in routes[2].error
    assert routes[3].error is None


def test_write_and_reparse_round_trip(tmp_path):
    f = tmp_path / "r.xml"
    f.write_text(GOOD)
    good = [r for r in parse_routes_file(f) if r.error is None]
    out = tmp_path / "out.xml"
    write_routes_file(good, out)
    again = parse_routes_file(out)
    assert [(r.route_id, r.town, r.waypoints, r.scenarios) for r in again] == [
        (r.route_id, r.town, r.waypoints, r.scenarios) for r in good
    ]
    assert routes_fingerprint(out) != routes_fingerprint(f)


def test_whole_file_errors(tmp_path):
    with pytest.raises(RouteFileError, match="not found"):
        parse_routes_file(tmp_path / "missing.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<routes><route")
    with pytest.raises(RouteFileError, match="not valid XML"):
        parse_routes_file(bad)
    dup = tmp_path / "dup.xml"
    dup.write_text('<routes><route id="1" town="a"/><route id="1" town="b"/></routes>')
    with pytest.raises(RouteFileError, match="duplicate"):
        parse_routes_file(dup)


def test_subset_syntax(tmp_path):
    assert parse_subset("0-2,7") == ["0", "1", "2", "7"]
    with pytest.raises(ValueError):
        parse_subset("5-2")
    f = tmp_path / "r.xml"
    f.write_text(GOOD)
    routes = parse_routes_file(f)
    assert [r.route_id for r in select_routes(routes, "0,3")] == ["0", "3"]
    with pytest.raises(ValueError, match="9"):
        select_routes(routes, "9")
