"""Cold start: import and initialisation of each handler module in a fresh interpreter.

For a cascata processor the probe imports the handler module and builds what its lazy
`handler` builds on the first invocation (settings from the environment, boto3 clients,
Powertools Logger and Metrics): `make_handler(dependencies(SETTINGS.from_env()))`; the
baseline's functions follow the same convention and are probed the same way (the work the
documentation's handlers do at import). No request is sent: creating a client does not
connect. The interpreter's own start-up is measured apart (`python -c pass`) and is the same for
every function. Runs go round-robin over the functions; each figure is the median of its runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cascata.pipeline import LOCAL_REGION, Pipeline
from cascata.project import find_project
from payments.tooling.bench import functions as fns

_PROBE = """
import json, sys, time
started = time.perf_counter()
sys.path[:0] = {paths!r}
import importlib
module = importlib.import_module({module!r})
imported = time.perf_counter()
if {build!r}:
    module.make_handler(module.dependencies(module.SETTINGS.from_env()))
built = time.perf_counter()
print(json.dumps({{"import_ms": (imported - started) * 1e3, "init_ms": (built - imported) * 1e3}}))
"""


@dataclass(frozen=True, slots=True)
class ColdStart:
    ms: dict[str, float]
    """function -> median import + initialisation, milliseconds."""
    import_ms: dict[str, float]
    init_ms: dict[str, float]
    interpreter_ms: float
    runs: int


def measure(
    sides: Mapping[str, Pipeline], *, runs: int = 5, on_run: Callable[[str], None] | None = None
) -> ColdStart:
    """`sides`: side -> pipeline; every processor is probed, keyed by `fns.label`."""
    targets: dict[str, tuple[str, bool, dict[str, str]]] = {
        fns.label(side, p.name): (p.module, True,
                                  pipeline.environment(p.name, stage=fns.STAGE))
        for side, pipeline in sides.items() for p in pipeline.processors
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    interpreter: list[float] = []
    names = list(targets)
    for run in range(runs):
        if on_run:
            on_run(f"run {run + 1}/{runs}")
        interpreter.append(_interpreter_ms())
        for name in names[run % len(names):] + names[: run % len(names)]:
            module, build, env = targets[name]
            samples[name].append(_probe(module, build, env))
    return ColdStart(
        ms={n: statistics.median(i + b for i, b in s) for n, s in samples.items()},
        import_ms={n: statistics.median(i for i, _ in s) for n, s in samples.items()},
        init_ms={n: statistics.median(b for _, b in s) for n, s in samples.items()},
        interpreter_ms=statistics.median(interpreter),
        runs=runs,
    )


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHON"))}
    env.update({
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        # As deployed: Powertools reads these at import; logs are quiet so stdout stays JSON.
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "bench",
    })
    env.update(extra)
    return env


def _probe(module: str, build: bool, extra: Mapping[str, str]) -> tuple[float, float]:
    paths = [str(find_project().code_dir), str(fns.ROOT)]
    code = _PROBE.format(paths=paths, module=module, build=build)
    # Our own interpreter running a probe built from our own constants.
    done = subprocess.run([sys.executable, "-c", code], env=_environment(extra),  # noqa: S603
                          text=True, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cold-start probe of {module} failed: {last}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["import_ms"]), float(figures["init_ms"])


def _interpreter_ms() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=_environment({}), check=True,
                   capture_output=True, timeout=60)
    return (time.perf_counter() - started) * 1e3
