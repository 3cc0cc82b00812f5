"""The command line. Commands stay thin; this is the only place that exits."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from explorer import claims, plot, report, results, runner, sides
from explorer import scenario as scenarios
from explorer.errors import EXIT_INTERRUPTED, ExplorerError, Interrupted, UsageError
from explorer.progress import Steps


def _raise_interrupted(signum: int, frame: Any) -> NoReturn:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; everything this run created was removed")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """explorer: run one workload in a container and in a VM, and measure the difference."""
    ctx.obj = {"debug": debug}


@main.command("list")
def list_cmd() -> None:
    """List the bundled scenarios."""
    rows = []
    for name, path in scenarios.available().items():
        s = scenarios.load_file(path)
        source = s.workload.image or f"offline: {s.workload.recipe.suite} + {', '.join(s.workload.recipe.packages)}"
        rows.append([name, source, s.workload.port, s.workload.ready, s.description])
    from tabulate import tabulate

    click.echo(tabulate(rows, headers=["scenario", "image", "port", "ready", "description"]))


@main.command("sides")
def sides_cmd() -> None:
    """List the sides explorer knows, and whether this host can run each (exit 0 either way)."""
    from tabulate import tabulate

    rows = []
    for name, side in sides.SIDES.items():
        try:
            sides.backend_for(name).check()
            status = "ready"
        except ExplorerError as exc:
            status = f"cannot run here: {exc}"
        rows.append([name, side.kind, side.title, ", ".join(side.roles), side.about, status])
    click.echo(tabulate(rows, headers=["side", "kind", "title", "host roles", "what it is", "here"],
                        maxcolwidths=[None, None, None, 16, 40, 30]))


def _load(name: str | None, scenario_file: str | None) -> scenarios.Scenario:
    if scenario_file:
        return scenarios.load_file(scenario_file)
    if not name:
        raise UsageError("name a scenario or give --scenario-file PATH", hint="explorer list shows the scenarios")
    return scenarios.load(name)


SIDES_HELP = f"Comma-separated sides ({', '.join(sides.SIDES)}); default: every side this host can run."
ONLY_HELP = "Only the sides of this kind (container or vm)."


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
def build(name: str | None, scenario_file: str | None, side_names: str | None, only: str | None) -> None:
    """Build (or find in the cache) what each side starts from: the container image, the VM images."""
    scenario = _load(name, scenario_file)
    skipped: dict[str, str] = {}
    backends, _ = runner.check_sides(sides.parse(side_names, only), skipped)
    built = []
    with Steps() as steps:
        for side_name, backend in backends.items():
            built.append((side_name, backend.prepare(scenario, steps)))
    for side_name, artifact in built:
        facts = artifact.facts
        state = "built" if facts.get("built") else "cached"
        size = report.human_bytes(facts.get("vm_image_bytes", facts.get("image_bytes")))
        kernel = f" with kernel {facts['kernel_version']}" if facts.get("kernel_version") else ""
        click.echo(f"{side_name}: {artifact.ref} ({state}, {size}{kernel})")
        for key, path in sorted(artifact.paths.items()):
            click.echo(f"  {key}: {path}")
    for side_name, reason in skipped.items():
        click.echo(f"{side_name}: skipped, {reason}")


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
@click.option("--repeat", type=click.IntRange(1, 100), help="Starts per side (default: the scenario's).")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the result as JSON here.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw startup and memory to this PNG.")
@click.option("--image", help="Instead of a scenario: any image explorer has or can pull.")
@click.option("--port", type=click.IntRange(1, 65535), help="With --image: the port the workload serves.")
@click.option("--ready", type=click.Choice(scenarios.READY_KINDS), help="With --image: the readiness check.")
@click.option("--process", "processes", multiple=True,
              help="With --image: the workload's process name (default: from the image's ENTRYPOINT + CMD).")
@click.option("--density", "density_count", type=click.IntRange(1, 500),
              help="Then run N instances per side at once (explorer density) and judge claim 7 from them.")
def run(name: str | None, scenario_file: str | None, side_names: str | None, only: str | None, repeat: int | None,
        fmt: str, output: str | None, image: str | None, port: int | None, ready: str | None,
        processes: tuple[str, ...], plot_file: str | None, density_count: int | None = None) -> None:
    """Run a scenario (or --image REF --port N --ready KIND) on every side, and compare them."""
    chosen = sides.parse(side_names, only)
    if plot_file:
        plot.require()  # before minutes of measuring, not after
    with Steps() as steps:
        if image or port or ready or processes:
            scenario = _image_scenario(name or scenario_file, image, port, ready, processes, steps)
        else:
            scenario = _load(name, scenario_file)
        result = runner.run(scenario, chosen, repeat, steps)
        if density_count:
            from explorer import density

            density.merge(result, density.run(scenario, tuple(result["sides"]), density_count, None, steps))
    _show(result, fmt, plot_file, output)


def _image_scenario(named: str | None, image: str | None, port: int | None, ready: str | None,
                    processes: tuple[str, ...], steps: Steps) -> scenarios.Scenario:
    """A scenario from flags; the process name comes from the image when not given."""
    if named:
        raise UsageError("give a scenario (NAME or --scenario-file) or --image, not both")
    if not image or port is None or ready is None:
        raise UsageError("--image, --port and --ready go together",
                         hint="e.g. explorer run --image mongo:7.0 --port 27017 --ready mongodb")
    argv: tuple[str, ...] = ()
    if not processes:
        from explorer.backends import get_backend
        from explorer.images.docker_image import image_argv

        backend = get_backend("container")
        backend.check()
        argv = image_argv(backend.client, scenarios.image_ref(image), steps)
    return scenarios.image_scenario(image, port, ready, processes, argv)


@main.command("report")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw startup and memory to this PNG.")
@click.option("--density", "density_files", type=click.Path(dir_okay=False), multiple=True,
              help="A saved density result (explorer density --output), repeatable: claim 7 is judged from its measured costs.")
def report_cmd(file: str, fmt: str, plot_file: str | None, density_files: tuple[str, ...] = ()) -> None:
    """Render a saved result again, judging the claims afresh from its figures."""
    if plot_file:
        plot.require()
    result = results.load_result(file)
    if density_files:
        from explorer import density, density_report

        for path in density_files:
            density.merge(result, density_report.load(path))
    _show(result, fmt, plot_file)


@main.command("density")
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
@click.option("--count", type=click.IntRange(1, 500), help="Instances per side (default: the side's own, e.g. 50 containers, 6 microVMs).")
@click.option("--step", type=click.IntRange(1, 500), help="Instances started between two measurements (default: count/10).")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the density result as JSON here.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw memory and time to ready against N.")
def density_cmd(name: str | None, scenario_file: str | None, side_names: str | None, only: str | None,
                count: int | None, step: int | None, fmt: str, output: str | None, plot_file: str | None) -> None:
    """Start many instances per side, all running, and fit their host memory against N."""
    from explorer import density, density_plot, density_report

    chosen = sides.parse(side_names, only)
    if plot_file:
        plot.require()
    scenario = _load(name, scenario_file)
    run_id = runner.new_run_id()
    click.echo(f"explorer density: run {run_id} (its containers and domains are labelled with it)", err=True)
    with Steps() as steps:
        doc = density.run(scenario, chosen, count, step, steps, run_id)
    if output:
        Path(output).write_text(json.dumps(doc, indent=2) + "\n")
    click.echo(density_report.render(doc, fmt), nl=False)
    if plot_file:
        density_plot.write(doc, plot_file)
    failed = {name: side["stopped"]["reason"] for name, side in doc["sides"].items() if side["stopped"]["by"] == "error"}
    if failed:  # the figures up to the failure are shown and saved; the exit code says it failed
        raise ExplorerError("; ".join(f"side {name} stopped: {why}" for name, why in failed.items()))


def _show(result: dict[str, Any], fmt: str, plot_file: str | None, output: str | None = None) -> None:
    """The claims judged from the figures, the result saved if asked for, the report in `fmt`,
    and the plot if asked for."""
    result["claims"] = claims.judge(result)
    if output:
        Path(output).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(report.render(result, fmt), nl=False)
    if plot_file:
        plot.write(result, plot_file)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
def compare(files: tuple[str, ...], fmt: str) -> None:
    """Put saved results side by side (other hosts, CI runners): one column per run."""
    labels = results.labels_for(list(files))
    runs = [(label, results.load_result(path)) for label, path in zip(labels, files)]
    click.echo(results.render_compare(runs, fmt), nl=False)


@main.command()
@click.option("--cache", is_flag=True, help="Also remove cached images, root filesystems and disks.")
def clean(cache: bool) -> None:
    """Remove every container, domain and file explorer labelled."""
    from explorer.cleanup import clean_all

    for line in clean_all(cache):
        click.echo(f"removed {line}")


@main.command()
def doctor() -> None:
    """Check what explorer needs on this host; exit 3 when a required part is missing."""
    from explorer.doctor import diagnose

    rows, ok = diagnose()
    from tabulate import tabulate

    click.echo(tabulate(rows, headers=["check", "status", "details"]))
    if not ok:
        raise SystemExit(3)


def cli() -> None:
    """Entry point: run the click group, turning ExplorerError into a message and an exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)  # a closed terminal: clean up, as for Ctrl-C
    debug = "--debug" in sys.argv[1:]
    try:
        code = main.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Abort:
        _fail(Interrupted("interrupted; everything this run created was removed"), debug)
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted; everything this run created was removed"), debug)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExplorerError as exc:
        _fail(exc, debug)


def _fail(exc: ExplorerError, debug: bool) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exception(exc)
    click.echo(f"Error: {exc}", err=True)
    if exc.hint:
        click.echo(f"Hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code if exc.exit_code else EXIT_INTERRUPTED)


if __name__ == "__main__":
    cli()
