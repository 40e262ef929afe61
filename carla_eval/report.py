"""Human-readable metrics: a rich table, with missing routes shouted, never hidden."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from carla_eval.metrics import Metrics

INFRACTION_LABELS = {
    "collisions_pedestrian": "Collisions with pedestrians /km",
    "collisions_vehicle": "Collisions with vehicles /km",
    "collisions_layout": "Collisions with layout /km",
    "red_light": "Red lights /km",
    "stop_infraction": "Stop signs /km",
    "outside_route_lanes": "Off-road (km outside lanes)",
    "route_dev": "Route deviations /km",
    "route_timeout": "Route timeouts /km",
    "vehicle_blocked": "Agent blocked /km",
    "yield_emergency_vehicle_infractions": "Yield to emergency vehicle /km",
    "scenario_timeouts": "Scenario timeouts /km",
    "min_speed_infractions": "Min speed messages /km",
}


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def metrics_table(m: Metrics, title: str = "carla-eval metrics") -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    table.add_column("Notes")
    if m.missing:
        table.add_row("[bold red]INCOMPLETE[/]", f"[bold red]{m.n_recorded} of {m.n_expected}[/]",
                      "[red]missing routes count 0 in DS / SR[/]")
    else:
        table.add_row("Routes", f"{m.n_recorded} of {m.n_expected}", "complete")
    table.add_row("Driving score (DS)", _fmt(m.driving_score), f"penalties: {m.penalty_formula}")
    table.add_row("Route completion (RC)", _fmt(m.route_completion, suffix=" %"), "")
    table.add_row("Infraction score (IS)", _fmt(m.infraction_penalty, 3), "")
    table.add_row("Success rate", _fmt(m.success_rate, suffix=" %"), f"{m.n_success} routes")
    for name, a in m.abilities.items():
        note = f"{a.n_success}/{a.n_routes}" + (f", {a.n_missing} missing" if a.n_missing else "")
        table.add_row(f"  {name}", _fmt(a.success_rate, suffix=" %"), note if a.n_routes else "no route")
    table.add_row("  Ability mean", _fmt(m.ability_mean, suffix=" %"), "over abilities with routes")
    table.add_row("Efficiency", _fmt(m.efficiency, suffix=" %"), f"{m.efficiency_routes} routes with min-speed data")
    table.add_row("Comfort", _fmt(m.comfort, suffix=" %"), f"{m.comfort_routes} routes with metric_info")
    table.add_row("km driven", _fmt(m.km_driven, 3), "")
    for key, value in m.infractions_per_km.items():
        if value:
            table.add_row(INFRACTION_LABELS.get(key, key), _fmt(value, 3), "")
    for status, count in sorted(m.status_counts.items()):
        table.add_row(f"status: {status}", str(count), "")
    table.add_row("Game / system time", f"{m.duration_game_s:.1f} / {m.duration_system_s:.1f} s", "summed over routes")
    return table


def print_metrics(m: Metrics, console: Console | None = None, title: str = "carla-eval metrics") -> None:
    console = console or Console()
    console.print(metrics_table(m, title))
    for note in m.notes:
        style = "bold red" if note.startswith("INCOMPLETE") else "yellow"
        console.print(f"[{style}]{note}[/]")
    if m.missing:
        shown = ", ".join(m.missing[:40]) + (" ..." if len(m.missing) > 40 else "")
        console.print(f"[bold red]missing routes ({len(m.missing)}):[/] {shown}")
