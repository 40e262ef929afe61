"""Route files in the CARLA leaderboard schema: parse, select, write, fingerprint.

    <routes>
      <route id="3" town="highway">
        <waypoints><position x="0.0" y="4.0" z="0.0"/> ...</waypoints>
        <scenarios>
          <scenario name="HardBrake_1" type="HardBrake">
            <trigger_point x="80.0" y="4.0" z="0.0" yaw="0.0"/>
            <param_name value="..."/>
          </scenario>
        </scenarios>
        <weathers><weather route_percentage="0" cloudiness="5"/></weathers>
      </route>
    </routes>

Coordinates are CARLA world metres (x east, y south). A route that is malformed does not stop the
file from loading: it comes back with ``error`` set, so a harness can record that route as failed
and run the others.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


class RouteFileError(ValueError):
    """The route file as a whole cannot be read (missing, not XML, no <routes> root)."""


@dataclass(frozen=True)
class ScenarioConfig:
    """One ``<scenario>`` of a route. ``params`` maps each child tag (other than trigger_point) to
    its attributes, e.g. ``{"brake_distance": {"value": "12"}}``."""

    name: str
    type: str
    trigger: tuple[float, float, float, float]  # x, y, z (m), yaw (deg)
    params: dict[str, dict[str, str]] = field(default_factory=dict)

    def param(self, key: str, default: str | None = None) -> str | None:
        entry = self.params.get(key)
        return entry.get("value", default) if entry else default


@dataclass(frozen=True)
class RouteConfig:
    """One ``<route>``; ``index`` is its position in the file, ``route_id`` its ``id`` attribute."""

    index: int
    route_id: str
    town: str
    waypoints: tuple[tuple[float, float, float], ...]
    scenarios: tuple[ScenarioConfig, ...] = ()
    weathers: tuple[dict[str, str], ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # set when this route is malformed; the others still load

    def record_id(self, repetition: int) -> str:
        """Leaderboard record id, e.g. ``RouteScenario_3_rep0``."""
        return f"RouteScenario_{self.route_id}_rep{repetition}"

    @property
    def scenario_type(self) -> str:
        """Type of the route's first scenario ('' when it has none): what Bench2Drive groups by."""
        return self.scenarios[0].type if self.scenarios else ""


def _float_attr(elem: ET.Element, key: str, where: str) -> float:
    raw = elem.get(key)
    if raw is None:
        raise ValueError(f"{where}: <{elem.tag}> has no '{key}' attribute")
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: <{elem.tag}> attribute {key}={raw!r} is not a number") from exc


def _parse_route(index: int, elem: ET.Element) -> RouteConfig:
    route_id = elem.get("id", "")
    town = elem.get("town", "")
    where = f"route index {index} (id={route_id!r})"
    try:
        if not route_id:
            raise ValueError(f"{where}: <route> has no 'id' attribute")
        if not town:
            raise ValueError(f"{where}: <route> has no 'town' attribute")
        wps_elem = elem.find("waypoints")
        if wps_elem is None:
            raise ValueError(f"{where}: no <waypoints>")
        waypoints = tuple(
            (_float_attr(p, "x", where), _float_attr(p, "y", where), float(p.get("z", "0") or 0.0))
            for p in wps_elem.iter("position")
        )
        if len(waypoints) < 2:
            raise ValueError(f"{where}: needs at least 2 <position> waypoints, found {len(waypoints)}")
        scenarios = []
        sc_root = elem.find("scenarios")
        for sc in sc_root.iter("scenario") if sc_root is not None else ():
            sc_type = sc.get("type")
            if not sc_type:
                raise ValueError(f"{where}: <scenario name={sc.get('name')!r}> has no 'type'")
            trig = sc.find("trigger_point")
            if trig is None:
                raise ValueError(f"{where}: scenario {sc.get('name')!r} has no <trigger_point>")
            trigger = (
                _float_attr(trig, "x", where),
                _float_attr(trig, "y", where),
                float(trig.get("z", "0") or 0.0),
                float(trig.get("yaw", "0") or 0.0),
            )
            params = {child.tag: dict(child.attrib) for child in sc if child.tag != "trigger_point"}
            scenarios.append(ScenarioConfig(sc.get("name", sc_type), sc_type, trigger, params))
        weathers_elem = elem.find("weathers")
        weathers = tuple(dict(w.attrib) for w in weathers_elem.iter("weather")) if weathers_elem is not None else ()
        return RouteConfig(index, route_id, town, waypoints, tuple(scenarios), weathers, dict(elem.attrib))
    except ValueError as exc:
        return RouteConfig(index, route_id or f"index{index}", town, (), attributes=dict(elem.attrib), error=str(exc))


def parse_routes_file(path: str | Path) -> list[RouteConfig]:
    """Read every ``<route>`` of a leaderboard route file, in file order.

    Raises:
        RouteFileError: the file is missing, not XML, or its root is not ``<routes>``; also when two
            routes share an id (results are keyed by id, so this must not pass).
    """
    path = Path(path)
    if not path.is_file():
        raise RouteFileError(f"route file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RouteFileError(f"route file {path} is not valid XML: {exc}") from exc
    if root.tag != "routes":
        raise RouteFileError(f"route file {path}: root element is <{root.tag}>, expected <routes>")
    routes = [_parse_route(i, elem) for i, elem in enumerate(root.findall("route"))]
    seen: set[str] = set()
    for r in routes:
        if r.route_id in seen:
            raise RouteFileError(f"route file {path}: duplicate route id {r.route_id!r}")
        seen.add(r.route_id)
    if not routes:
        raise RouteFileError(f"route file {path} holds no <route>")
    return routes


def parse_subset(subset: str) -> list[str]:
    """Leaderboard ``--routes-subset`` syntax -> route ids: ``"0-4,7"`` -> ["0","1","2","3","4","7"].

    Ranges are inclusive and numeric; other items are taken as literal ids.
    """
    ids: list[str] = []
    for part in (p.strip() for p in subset.split(",")):
        if not part:
            continue
        if "-" in part and all(s.strip().isdigit() for s in part.split("-", 1)):
            lo, hi = (int(s) for s in part.split("-", 1))
            if hi < lo:
                raise ValueError(f"routes subset range {part!r} is empty (end before start)")
            ids.extend(str(i) for i in range(lo, hi + 1))
        else:
            ids.append(part)
    if not ids:
        raise ValueError(f"routes subset {subset!r} selects nothing")
    return ids


def select_routes(routes: list[RouteConfig], subset: str | None) -> list[RouteConfig]:
    """Keep the routes whose id is in ``subset`` (file order). Unknown ids are an error."""
    if not subset:
        return list(routes)
    wanted = parse_subset(subset)
    known = {r.route_id for r in routes}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ValueError(f"routes subset names ids not in the route file: {', '.join(missing)}")
    keep = set(wanted)
    return [r for r in routes if r.route_id in keep]


def write_routes_file(routes: list[RouteConfig], path: str | Path) -> None:
    """Write routes in the leaderboard schema (atomically: temp file then rename)."""
    root = ET.Element("routes")
    for r in routes:
        if r.error:
            raise ValueError(f"cannot write malformed route {r.route_id!r}: {r.error}")
        attrs = dict(r.attributes)
        attrs.update({"id": r.route_id, "town": r.town})
        re_ = ET.SubElement(root, "route", attrs)
        wps = ET.SubElement(re_, "waypoints")
        for x, y, z in r.waypoints:
            ET.SubElement(wps, "position", {"x": f"{x:.3f}", "y": f"{y:.3f}", "z": f"{z:.3f}"})
        scs = ET.SubElement(re_, "scenarios")
        for sc in r.scenarios:
            se = ET.SubElement(scs, "scenario", {"name": sc.name, "type": sc.type})
            x, y, z, yaw = sc.trigger
            ET.SubElement(se, "trigger_point", {"x": f"{x:.3f}", "y": f"{y:.3f}", "z": f"{z:.3f}", "yaw": f"{yaw:.3f}"})
            for tag, attrib in sc.params.items():
                ET.SubElement(se, tag, attrib)
        if r.weathers:
            ws = ET.SubElement(re_, "weathers")
            for w in r.weathers:
                ET.SubElement(ws, "weather", w)
    ET.indent(root)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ET.ElementTree(root).write(tmp, encoding="unicode", xml_declaration=True)
    tmp.replace(path)


def routes_fingerprint(path: str | Path) -> str:
    """SHA-256 of the route file's bytes: a resumed run refuses a changed file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
