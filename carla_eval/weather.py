"""Weather ids of routes: the route's own ``weather_id`` attribute, or a match in a weather table.

Bench2Drive names 23 weathers in ``leaderboard/data/weather.xml``::

    <weathers>
      <case weather_id="0">
        <weather route_percentage="0" cloudiness="5.0" precipitation="0.0" ... fog_density="2.0"/>
        <weather route_percentage="100" .../>
      </case>
      ...
    </weathers>

and its evaluator gives a route the id of the first case whose FIRST ``<weather>`` has the same
values as the route's first ``<weather>`` (every attribute but ``route_percentage``), or None.
:func:`match_weather` applies that rule (values compared as numbers). The table is Bench2Drive's
file, read where it is installed (``carla-eval run --weather-table FILE``); none ships here.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Mapping, Sequence

from carla_eval.routes import RouteConfig

WeatherTable = Sequence[tuple[str, Mapping[str, str]]]  # (weather id, attributes of its first <weather>)


class WeatherTableError(ValueError):
    """The weather table cannot be read."""


def read_weather_table(path: str | Path) -> list[tuple[str, dict[str, str]]]:
    """``[(weather_id, attributes of the case's first <weather>)]`` in file order."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise WeatherTableError(f"weather table {path}: {exc}") from exc
    table = []
    for i, case in enumerate(root.findall("case")):
        wid = case.get("weather_id")
        first = case.find("weather")
        if wid is None or first is None:
            raise WeatherTableError(f"weather table {path}: <case> #{i} needs a weather_id and a <weather>")
        table.append((wid, dict(first.attrib)))
    if not table:
        raise WeatherTableError(f"weather table {path} has no <case>")
    return table


def _same(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-6)
    except ValueError:
        return a.strip() == b.strip()


def match_weather(weather: Mapping[str, str], table: WeatherTable) -> str | None:
    """Id of the first table case with the same values as ``weather`` (route_percentage aside)."""
    for wid, case in table:
        keys = [k for k in case if k != "route_percentage"]
        if all(k in weather and _same(weather[k], case[k]) for k in keys):
            return wid
    return None


def route_weather_id(route: RouteConfig, table: WeatherTable | None = None) -> int | str | None:
    """The route's ``weather_id`` attribute; else the table match of its first weather; else None."""
    raw = route.attributes.get("weather_id")
    if raw is None and table is not None and route.weathers:
        raw = match_weather(route.weathers[0], table)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw
