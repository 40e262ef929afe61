"""How a route looks: sky, sun brightness and colour jitter, keyed by the route's weather and seed.

A model trained on one look learns that look by heart, so every route gets its own: a preset chosen
from the route's CARLA weather (``<weathers><weather .../>`` of the route file: ``sun_altitude_angle``,
``cloudiness``, ``precipitation``, ``wetness``, ``fog_density``, CARLA's ``carla.WeatherParameters``
names) or, when the route has none, from its seed; then a seeded jitter of brightness and colour
balance. Everything is a pure function of (route weather, seed), so a route renders the same bytes
every run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Appearance:
    """Colours of one route's render (linear 0..1 RGB multipliers and sky colours).

    Attributes:
        name: preset name.
        light: RGB multiplier of every lit surface (sun brightness and colour).
        sky_top, sky_horizon: sky colours at the zenith and at the horizon.
        treeline: colour of the distant treeline on the horizon.
        road_wet: 0..1, darkens the road surface (wet asphalt).
    """

    name: str
    light: RGB
    sky_top: RGB
    sky_horizon: RGB
    treeline: RGB
    road_wet: float = 0.0


PRESETS: dict[str, Appearance] = {
    "clear_noon": Appearance("clear_noon", (1.0, 1.0, 1.0), (0.30, 0.52, 0.86), (0.72, 0.82, 0.93), (0.16, 0.26, 0.14)),
    "cloudy_noon": Appearance("cloudy_noon", (0.80, 0.82, 0.86), (0.55, 0.58, 0.62), (0.75, 0.76, 0.78), (0.20, 0.25, 0.20)),
    "wet_cloudy": Appearance("wet_cloudy", (0.68, 0.70, 0.75), (0.42, 0.45, 0.50), (0.62, 0.64, 0.67), (0.15, 0.19, 0.16), road_wet=0.45),
    "clear_sunset": Appearance("clear_sunset", (0.95, 0.74, 0.55), (0.25, 0.30, 0.55), (0.98, 0.62, 0.36), (0.12, 0.12, 0.10)),
    "dusk": Appearance("dusk", (0.45, 0.45, 0.58), (0.08, 0.10, 0.22), (0.35, 0.30, 0.42), (0.05, 0.06, 0.07)),
    "hazy": Appearance("hazy", (0.92, 0.90, 0.84), (0.62, 0.66, 0.70), (0.85, 0.85, 0.83), (0.45, 0.48, 0.45)),
}
SEEDED_PRESETS: tuple[str, ...] = ("clear_noon", "cloudy_noon", "clear_sunset", "wet_cloudy", "hazy", "clear_noon", "dusk")


def preset_from_weather(weather: Mapping[str, str]) -> str:
    """The preset for one CARLA weather dict (string values as the route XML holds them)."""

    def num(key: str) -> float:
        try:
            return float(weather.get(key, 0.0))
        except (TypeError, ValueError):
            raise ValueError(f"route weather field {key}={weather.get(key)!r} is not a number") from None

    sun = num("sun_altitude_angle") if "sun_altitude_angle" in weather else 45.0
    if sun < 0.0:
        return "dusk"
    if num("precipitation") >= 30.0 or num("wetness") >= 30.0 or num("precipitation_deposits") >= 30.0:
        return "wet_cloudy"
    if num("fog_density") >= 25.0:
        return "hazy"
    if sun < 15.0:
        return "clear_sunset"
    if num("cloudiness") >= 50.0:
        return "cloudy_noon"
    return "clear_noon"


def _jitter(base: Appearance, rng: np.random.Generator, amount: float) -> Appearance:
    if amount <= 0.0:
        return base
    gain = 1.0 + rng.uniform(-0.15, 0.15) * amount
    balance = 1.0 + rng.uniform(-0.05, 0.05, 3) * amount

    def scale(c: RGB, extra: float = 1.0) -> RGB:
        return tuple(float(np.clip(v * gain * b * extra, 0.0, 1.0)) for v, b in zip(c, balance))  # type: ignore[return-value]

    sky_shift = 1.0 + rng.uniform(-0.08, 0.08) * amount
    return replace(base, light=scale(base.light), sky_top=scale(base.sky_top, sky_shift),
                   sky_horizon=scale(base.sky_horizon, sky_shift), treeline=scale(base.treeline))


def route_appearance(weathers: Sequence[Mapping[str, str]], seed: int, route_id: str = "", jitter: float = 1.0) -> Appearance:
    """The appearance of a route: preset from its first weather (or from ``seed``), then jitter.

    Args:
        weathers: the route's ``<weather>`` attribute dicts (may be empty).
        seed: the route's traffic seed; with ``route_id`` it seeds the jitter.
        jitter: 0 turns the jitter off, 1 is the default strength.
    """
    key = zlib.crc32(f"{route_id}/{int(seed)}".encode())
    if weathers:
        name = preset_from_weather(weathers[0])
    else:
        name = SEEDED_PRESETS[key % len(SEEDED_PRESETS)]
    return _jitter(PRESETS[name], np.random.default_rng(key), jitter)
