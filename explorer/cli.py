"""The command line. Commands stay thin; this is the only place that exits."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, NoReturn

import click

from explorer import claims, outputs, plot, report, results, runner
from explorer import scenario as scenarios
from explorer.backends import SIDES
from explorer.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    ExplorerError,
    Interrupted,
    UsageError,
)
from explorer.images import check_cache
from explorer.progress import Steps
from explorer.runner import INTERRUPTS


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


def _load(name: str | None, scenario_file: str | None) -> scenarios.Scenario:
    if name and scenario_file:
        raise UsageError(f"give a scenario NAME ({name}) or --scenario-file ({scenario_file}), not both")
    if scenario_file:
        return scenarios.load_file(scenario_file)
    if not name:
        raise UsageError("name a scenario or give --scenario-file PATH", hint="explorer list shows the scenarios")
    return scenarios.load(name)


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--only", type=click.Choice(SIDES), help="Build one side's image only.")
def build(name: str | None, scenario_file: str | None, only: str | None) -> None:
    """Build (or find in the cache) the scenario's container image and the VM image made from it."""
    from explorer.backends import get_backend

    scenario = _load(name, scenario_file)
    check_cache()
    backend = get_backend("container")
    backend.check()
    with Steps() as steps:
        artifact = backend.prepare(scenario, steps)
        vm_image = None
        if only != "container":
            from explorer.images.vm_image import ensure_vm_image

            vm_image = ensure_vm_image(backend.client, scenario, artifact, steps)
    if only != "vm":
        state = "built" if artifact.facts.get("built") else "cached"
        click.echo(f"container: {artifact.ref} ({state}, {report.human_bytes(artifact.facts.get('image_bytes'))})")
        if artifact.paths.get("rootfs_tar"):
            click.echo(f"  rootfs: {artifact.paths['rootfs_tar']}")
    if vm_image is not None:
        state = "built" if vm_image.facts.get("built") else "cached"
        click.echo(f"vm: {vm_image.disk} ({state}, {report.human_bytes(vm_image.facts.get('vm_image_bytes'))} "
                   f"with kernel {vm_image.kernel_version} and initramfs)")


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--only", type=click.Choice(SIDES), help="Measure one side only.")
@click.option("--repeat", type=click.IntRange(1, 100), help="Starts per side (default: the scenario's).")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the result as JSON here.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw startup and memory to this PNG.")
@click.option("--image", help="Instead of a scenario: any image explorer has or can pull.")
@click.option("--port", type=click.IntRange(1, 65535), help="With --image: the port the workload serves.")
@click.option("--ready", type=click.Choice(scenarios.READY_KINDS), help="With --image: the readiness check.")
@click.option("--process", "processes", multiple=True,
              help="With --image: the workload's process name (default: from the image's ENTRYPOINT + CMD).")
def run(name: str | None, scenario_file: str | None, only: str | None, repeat: int | None,
        fmt: str, output: str | None, image: str | None, port: int | None, ready: str | None,
        processes: tuple[str, ...], plot_file: str | None) -> None:
    """Run a scenario (or --image REF --port N --ready KIND) in a container and in a VM, and compare them."""
    sides = (only,) if only else SIDES
    if plot_file:
        plot.require()  # before minutes of measuring, not after
    if output:
        outputs.check_writable(output, "--output")
    check_cache()
    with Steps() as steps:
        if image or port or ready or processes:
            scenario = _image_scenario(name or scenario_file, image, port, ready, processes, steps)
        else:
            scenario = _load(name, scenario_file)
        result = runner.run(scenario, sides, repeat, steps)
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
def report_cmd(file: str, fmt: str, plot_file: str | None) -> None:
    """Render a saved result again, judging the claims afresh from its figures."""
    if plot_file:
        plot.require()
    _show(results.load_result(file), fmt, plot_file)


def _show(result: dict[str, Any], fmt: str, plot_file: str | None, output: str | None = None) -> None:
    """The claims judged from the figures, the result saved if asked for, the report in `fmt`,
    and the plot if asked for."""
    result["claims"] = claims.judge(result)
    click.echo(report.render(result, fmt), nl=False)  # first: a result that cannot be saved is still shown
    if plot_file:
        plot.write(result, plot_file)
    if output:
        outputs.write_text(output, json.dumps(result, indent=2) + "\n", "the result")


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
    """Remove every container, domain and file explorer labelled (sparing a live run's), and
    what dead builds left; exit 3 if a side could not be reached."""
    from explorer.cleanup import clean_all

    done = clean_all(cache)
    for line in done.removed:
        click.echo(f"removed {line}")
    for line in done.kept:
        click.echo(f"kept {line}")
    for line in done.notes:
        click.echo(line)
    if not done.removed:
        click.echo("removed nothing" + (" on the sides that answered" if done.unreachable else ""))
    if done.unreachable:
        for line in done.unreachable:
            click.echo(f"Error: could not clean {line}", err=True)
        raise SystemExit(EXIT_UNAVAILABLE)


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
    for signum in INTERRUPTS[1:]:  # SIGINT is Python's KeyboardInterrupt already
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:  # nohup: ignored
            signal.signal(signum, _raise_interrupted)  # SIGHUP: a closed terminal, a dropped ssh session
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
