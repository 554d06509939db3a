"""Benchmark of manifest rendering.

Renders the four manifests of many agents and reports agents per second
(median over repeats), and the first render after start-up (cold: it loads and
compiles the templates) against a warm render. It also checks that the
templates are compiled once, not once per agent.

    python benchmarks/render.py [--agents 1000] [--repeat 5] [--templates-dir DIR]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentproxy import render as render_module
from agentproxy.render import dump_yaml, render_agent
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import AgentSpec, build_spec

GOAL = 2000
"""Agents per second, YAML output included, that rendering should reach."""
_compilations = 0
_original_compile = jinja2.Environment.compile


def _counting_compile(self: jinja2.Environment, *args: Any, **kwargs: Any) -> Any:
    global _compilations
    _compilations += 1
    return _original_compile(self, *args, **kwargs)


jinja2.Environment.compile = _counting_compile  # type: ignore[method-assign]  # counts the compiles


def _clear_template_caches() -> None:
    """Forget compiled templates, as a fresh process would not have them."""
    render_module._environment.cache_clear()
    render_module._compiled.cache_clear()


def _specs(settings: Settings, count: int) -> list[AgentSpec]:
    """Distinct agents, each with a few env variables and a first message."""
    return [
        build_spec(settings, f"session-{i % 50}", f"agent{i}",
                   env={"LOG_LEVEL": "info", "WORKSPACE": f"/w/{i}", "RUN": str(i)},
                   message=f"Task {i}: fix the failing tests\nthen open a pull request")
        for i in range(count)
    ]


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run(args: argparse.Namespace) -> int:
    overrides = [f"templates_dir={args.templates_dir}"] if args.templates_dir else []
    settings = load_settings(None, overrides, environ={}).settings
    specs = _specs(settings, args.agents)

    cold: list[float] = []
    warm_one: list[float] = []
    render_rate: list[float] = []
    dump_rate: list[float] = []
    compiles_cold: list[int] = []
    compiles_warm: list[int] = []
    global _compilations
    for _ in range(args.repeat):
        _clear_template_caches()
        _compilations = 0
        cold.append(_time(lambda: render_agent(settings, specs[0])))
        compiles_cold.append(_compilations)
        warm_one.append(_time(lambda: render_agent(settings, specs[0])))

        _compilations = 0
        elapsed = _time(lambda: [render_agent(settings, spec) for spec in specs])
        render_rate.append(len(specs) / elapsed)
        elapsed = _time(lambda: [dump_yaml(render_agent(settings, spec)) for spec in specs])
        dump_rate.append(len(specs) / elapsed)
        compiles_warm.append(_compilations)

    templates = len(render_module.TEMPLATES)
    cache = render_module._compiled.cache_info()
    libyaml = "yes" if getattr(yaml, "__with_libyaml__", False) else "no"
    print(f"agentproxy render benchmark: {args.agents} agents x {args.repeat} repeats "
          f"(Python {platform.python_version()}, Jinja2 {jinja2.__version__}, PyYAML {yaml.__version__}, "
          f"libyaml {libyaml})")
    print()
    print(f"{'stage':<34}{'agents/s':>12}{'ms/agent':>12}")
    for label, rates in (("render_agent (warm)", render_rate), ("render_agent + dump_yaml (warm)", dump_rate)):
        rate = statistics.median(rates)
        print(f"{label:<34}{rate:>12,.0f}{1000 / rate:>12.3f}")
    print(f"{'ratio to the goal of 2000/s':<34}{statistics.median(dump_rate) / GOAL:>11.2f}x"
          f"{'':>12}   (render_agent + dump_yaml)")
    print(f"{'first render (cold, compiles)':<34}{'':>12}{statistics.median(cold) * 1000:>12.3f}")
    print(f"{'second render (warm)':<34}{'':>12}{statistics.median(warm_one) * 1000:>12.3f}")
    print()
    warm_per_agent = 1 / statistics.median(render_rate)
    print(f"cold first render = {statistics.median(cold) / warm_per_agent:.0f}x a warm render")
    print(f"template compilations: {compiles_cold} per cold start, {compiles_warm} during the warm loops; "
          f"compiled-template cache in the last repeat: {cache.hits} hits, {cache.misses} miss(es)")

    if any(c != templates for c in compiles_cold) or any(compiles_warm):
        print(f"error: templates must be compiled once per start ({templates} templates)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents rendered per repeat (default: 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; medians are reported (default: 5)")
    parser.add_argument("--templates-dir", help="operator templates to benchmark instead of the defaults")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.repeat < 1:
        parser.error("--agents and --repeat must be at least 1")
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
