"""The command line. Commands stay thin; this is the only place that exits."""

from __future__ import annotations

import dataclasses
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click
from tabulate import tabulate

from explorer import claims, density_run, document, interrupts, lifecycle, readiness, sides
from explorer import scenario as scenarios
from explorer.backends import backend_for
from explorer.cache import check_cache
from explorer.cleanup import clean_all
from explorer.doctor import diagnose
from explorer.errors import EXIT_UNAVAILABLE, ExplorerError, UsageError
from explorer.images.container.source import workload_argv
from explorer.interrupts import Interrupted
from explorer.load import rounds
from explorer.model import Artifact
from explorer.output import compare as comparison
from explorer.output import density_plot, files, fit, page, plot, report, results
from explorer.output import density_table as density_report
from explorer.progress import Steps
from explorer.result import Result
from explorer.units import human_bytes


class ReadyType(click.ParamType[readiness.ReadySpec, str]):
    """--ready KIND[:VALUE...]: a readiness strategy in the command line's form (readiness.parse)."""

    name = "KIND[:VALUE...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> readiness.ReadySpec:
        if isinstance(value, readiness.ReadySpec):
            return value
        try:
            return readiness.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
        recipe = s.workload.recipe
        if s.workload.image:
            source = s.workload.image
        else:
            assert recipe is not None  # a workload has an image or a recipe (the schema's oneOf)
            source = f"offline: {recipe.suite} + {', '.join(recipe.packages)}"
        rows.append([name, source, s.workload.port, s.workload.ready, s.description])
    click.echo(tabulate(rows, headers=["scenario", "image", "port", "ready", "description"]))


@main.command("sides")
def sides_cmd() -> None:
    """List the sides explorer knows, and whether this host can run each (exit 0 either way)."""
    rows = []
    for name, side in sides.SIDES.items():
        try:
            backend_for(name).check()
            status = "ready"
        except ExplorerError as exc:
            status = f"cannot run here: {exc}"
        rows.append([name, side.kind, side.title, ", ".join(side.roles), side.about, status])
    click.echo(
        tabulate(
            rows,
            headers=["side", "kind", "title", "host roles", "what it is", "here"],
            maxcolwidths=[None, None, None, 16, 40, 30],
        )
    )


def _load(name: str | None, scenario_file: str | None) -> scenarios.Scenario:
    if name and scenario_file:
        raise UsageError(f"give a scenario NAME ({name}) or --scenario-file ({scenario_file}), not both")
    if scenario_file:
        return scenarios.load_file(scenario_file)
    if not name:
        raise UsageError("name a scenario or give --scenario-file PATH", hint="explorer list shows the scenarios")
    return scenarios.load(name)


SIDES_HELP = (
    f"Comma-separated sides ({', '.join(sides.SIDES)}), each of which must run; default: every side this host can run."
)
ONLY_HELP = "Only the sides of this kind (container or vm) that this host can run."


RESULTS_HELP = f"Where every result is kept (default ${results.ENV}, else $XDG_DATA_HOME/explorer/results)."
HTML_HELP = "Also write the results page (one self-contained HTML file) here."
DETAIL_HELP = "Show every table in the terminal, not only the answer and the key figures."


def _choice(side_names: str | None, only: str | None) -> lifecycle.Choice:
    """--sides names sides that must run; --only picks a kind, skipping what cannot run."""
    if side_names and only:
        raise UsageError("give --sides or --only, not both")
    return lifecycle.Choice(names=sides.parse(side_names), kind=only)


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
@click.option("--fullvm", is_flag=True, help="Build the full-OS VM's image (Debian with systemd) only.")
@click.option("--fullos", "fullos_deprecated", is_flag=True, hidden=True, help="Deprecated: --fullvm.")
@click.option("--box", is_flag=True, help="Build the full-OS VM's image and package it as a Vagrant box.")
def build(
    name: str | None,
    scenario_file: str | None,
    side_names: str | None,
    only: str | None,
    fullvm: bool,
    box: bool,
    fullos_deprecated: bool = False,
) -> None:
    """Build (or find in the cache) what each side starts from: the container image, the VM images."""
    if fullos_deprecated:
        click.echo("explorer build: --fullos is deprecated, use --fullvm (the side's name)", err=True)
    choice = _choice(side_names, only)
    scenario = _load(name, scenario_file)
    check_cache()
    if fullvm or fullos_deprecated or box:  # the full-OS VM's side (and the Vagrant one's box), through the registry
        if scenario.workload.recipe is None:
            raise UsageError(
                f"explorer build --fullvm needs an offline recipe; {scenario.name} uses an image",
                hint="the full-OS sides run offline recipes only (see the README)",
            )
        choice = lifecycle.Choice(names=("fullvm", "vagrant") if box else ("fullvm",))
    skipped: dict[str, str] = {}
    checked = lifecycle.check_sides(scenario, choice, skipped)
    built = []
    with Steps() as steps:
        for side_name, (backend, _engine) in checked.items():
            built.append((side_name, backend.prepare(scenario, steps)))
    for side_name, artifact in built:
        facts = artifact.facts
        state = "built" if facts.get("built") else "cached"
        size = human_bytes(facts.get("vm_image_bytes", facts.get("image_bytes")))
        kernel = f" with kernel {facts['kernel_version']}" if facts.get("kernel_version") else ""
        click.echo(f"{side_name}: {artifact.ref} ({state}, {size}{kernel})")
        for key, path in sorted(artifact.paths.items()):
            click.echo(f"  {key}: {path}")
        for line in _fullvm_details(artifact, scenario.name):
            click.echo(f"  {line}")
    for side_name, reason in skipped.items():
        click.echo(f"{side_name}: skipped, {reason}")


def _fullvm_details(artifact: Artifact, scenario: str) -> list[str]:
    """What the full-OS image is made of (its sizes), and the Vagrant box's, where they are."""
    f, size = artifact.facts, human_bytes
    lines = []
    if "package_count" in f:
        lines.append(
            f"{f['package_count']} packages; disk {size(f['disk_bytes'])} on disk, "
            f"{size(f['disk_virtual_bytes'])} virtual; kernel {size(f['kernel_bytes'])}, "
            f"initrd {size(f['initrd_bytes'])}; total {size(f['vm_image_bytes'])}"
        )
        lines.append(
            f"root filesystem {size(f['rootfs_bytes'])}: modules {size(f['rootfs_modules_bytes'])}, "
            f"workload {size(f['rootfs_workload_bytes'])}, other {size(f['rootfs_other_bytes'])}; "
            f"masked {', '.join(f['masked_units'])}"
        )
    if artifact.box:
        lines.append(
            f"box {artifact.box}: {size(f['box_bytes'])}, added to Vagrant; "
            f"then: EXPLORER_SCENARIO={scenario} vagrant up (the Vagrantfile at the repository's top)"
        )
    return lines


@main.command()
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
@click.option("--repeat", type=click.IntRange(1, 100), help="Starts per side (default: the scenario's).")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the result as JSON here.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw startup and memory to this PNG.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help=HTML_HELP)
@click.option("--results-dir", type=click.Path(file_okay=False), help=RESULTS_HELP)
@click.option("--detail", is_flag=True, help=DETAIL_HELP)
@click.option("--image", help="Instead of a scenario: any image explorer has or can pull.")
@click.option("--port", type=click.IntRange(1, 65535), help="With --image: the port the workload serves.")
@click.option(
    "--ready",
    type=ReadyType(),
    help=f"With --image: the readiness check, one of {readiness.syntax()} (values after ':' in "
    "order, an empty one keeps its default; \\r \\n \\t escapes). E.g. http:/healthz:200.",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Seconds each start may take to be ready, on every side (default: the scenario's).",
)
@click.option(
    "--process",
    "processes",
    multiple=True,
    help="With --image: the workload's process name (default: from the image's ENTRYPOINT + CMD).",
)
@click.option(
    "--density",
    "density_count",
    type=click.IntRange(1, 500),
    help="Then run N instances per side at once (explorer density) and judge claim 7 from them.",
)
@click.option(
    "--load-seconds",
    type=click.FloatRange(0.5, 600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Length of each round of the standard load (3 measured rounds and 1 traced, per side and native).",
)
@click.option(
    "--no-load", is_flag=True, help="Skip the standard load (what isolation costs; the host kernel's surface)."
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 (after the report) when a side's figures cannot be trusted, e.g. an impossible timeline.",
)
def run(
    name: str | None,
    scenario_file: str | None,
    side_names: str | None,
    only: str | None,
    repeat: int | None,
    fmt: str,
    output: str | None,
    image: str | None,
    port: int | None,
    ready: readiness.ReadySpec | None,
    ready_timeout: float | None,
    processes: tuple[str, ...],
    plot_file: str | None,
    density_count: int | None = None,
    strict: bool = False,
    load_seconds: float = 2.0,
    no_load: bool = False,
    html_file: str | None = None,
    results_dir: str | None = None,
    detail: bool = False,
) -> None:
    """Run a scenario (or --image REF --port N --ready KIND) on every side, and compare them."""
    choice = _choice(side_names, only)
    if plot_file:
        plot.require()  # before minutes of measuring, not after
    if output:
        files.check_writable(output, "--output")
    if html_file:
        files.check_writable(html_file, "--html")
    keep_in = results.check(results.directory(results_dir))
    check_cache()
    with Steps() as steps:
        if image or port or ready or processes:
            scenario = _image_scenario(name or scenario_file, image, port, ready, processes, steps)
        else:
            scenario = _load(name, scenario_file)
        if ready_timeout is not None:
            scenario = _with_ready_timeout(scenario, ready_timeout)
        load = None if no_load else rounds.Settings(seconds=load_seconds)
        result = lifecycle.run(scenario, choice, repeat, steps, load=load)
        if density_count:
            measured = lifecycle.Choice(names=tuple(result.sides))
            result = document.merge_density(result, density_run.run(scenario, measured, density_count, None, steps))
    _show(result, fmt, plot_file, output, Keep(keep_in, html_file, detail))
    untrusted = report.untrusted(result)
    if strict and untrusted:
        raise ExplorerError(f"--strict: {'; '.join(untrusted)}", hint="the report above says which figures and why")


def _with_ready_timeout(scenario: scenarios.Scenario, seconds: float) -> scenarios.Scenario:
    """--ready-timeout: one limit for every side, kept in the result with the scenario."""
    timeouts = dataclasses.replace(scenario.timeouts, ready_s=seconds, vm_ready_s=seconds)
    return dataclasses.replace(scenario, timeouts=timeouts)


def _image_scenario(
    named: str | None,
    image: str | None,
    port: int | None,
    ready: readiness.ReadySpec | None,
    processes: tuple[str, ...],
    steps: Steps,
) -> scenarios.Scenario:
    """A scenario from flags; the process name comes from the image when not given."""
    if named:
        raise UsageError("give a scenario (NAME or --scenario-file) or --image, not both")
    if not image or port is None or ready is None:
        raise UsageError(
            "--image, --port and --ready go together",
            hint="e.g. explorer run --image mongo:7.0 --port 27017 --ready mongodb",
        )
    argv: tuple[str, ...] = ()
    if not processes:
        argv = workload_argv(scenarios.image_ref(image), steps)
    return scenarios.image_scenario(image, port, ready, processes, argv)


@main.command("report")
@click.argument("paths", metavar="[FILE...]", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw startup and memory to this PNG.")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help=HTML_HELP + " Several files: the compare view."
)
@click.option("--results-dir", type=click.Path(file_okay=False), help=RESULTS_HELP)
@click.option("--detail", is_flag=True, help=DETAIL_HELP)
@click.option("--list", "list_kept", is_flag=True, help="List the kept results instead (as explorer results).")
@click.option(
    "--density",
    "density_files",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="A saved density result (explorer density --output), repeatable: claim 7 is judged from its measured costs.",
)
def report_cmd(
    paths: tuple[str, ...],
    fmt: str,
    plot_file: str | None,
    density_files: tuple[str, ...] = (),
    html_file: str | None = None,
    results_dir: str | None = None,
    detail: bool = False,
    list_kept: bool = False,
) -> None:
    """Render a saved result again (by default the latest kept one), judging the claims afresh
    from its figures; several files with --html make the compare page."""
    folder = results.directory(results_dir)
    if list_kept:
        _list_results(folder, fmt)
        return
    if plot_file:
        plot.require()
    if html_file:
        files.check_writable(html_file, "--html")
    files_given = list(paths) or [str(results.latest(folder))]
    loaded = [document.load_result(path) for path in files_given]
    if len(loaded) > 1:
        if density_files or plot_file:
            raise UsageError("--density and --plot take one result file", hint="give one FILE, or none for the latest")
        runs = [(label, claims.judged(result)) for label, result in zip(comparison.labels_for(files_given), loaded)]
        if html_file:
            _write_page(runs, html_file)
        else:
            click.echo(comparison.render_compare(runs, fmt), nl=False)
        return
    result = loaded[0]
    for path in density_files:
        result = document.merge_density(result, document.load_density(path))
    _show(result, fmt, plot_file, keep=Keep(None, html_file, detail))
    if not paths:
        click.echo(f"(the latest kept result: {files_given[0]})", err=fmt != "table")


@main.command("results")
@click.option("--results-dir", type=click.Path(file_okay=False), help=RESULTS_HELP)
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
def results_cmd(results_dir: str | None, fmt: str = "table") -> None:
    """List the kept results: when, scenario, host, sides, accelerator, file."""
    _list_results(results.directory(results_dir), fmt)


def _list_results(folder: Path, fmt: str = "table") -> None:
    """The kept documents that fit their schema, in `fmt`; then, exit 2 naming each one that does not."""
    kept = results.listing(folder)
    if fmt == "json":
        click.echo(results.listing_json(kept, folder))
    elif not kept.found:
        click.echo(f"no results kept in {folder} (explorer run keeps every run's there)", err=fmt != "table")
    else:
        rows = [[k.when, k.kind, k.scenario, k.host, ",".join(k.sides), k.accel, k.path.name] for k in kept.found]
        headers = ["when (UTC)", "kind", "scenario", "host", "sides", "VMs on", "file"]
        click.echo(tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "simple"))
        click.echo(f"in {folder}", err=fmt != "table")
    if kept.unfit:
        raise UsageError(
            f"{len(kept.unfit)} kept file(s) do not fit their schema: " + "; ".join(kept.unfit),
            hint=document.UNFIT_HINT,
        )


@main.command("density")
@click.argument("name", required=False)
@click.option("--scenario-file", type=click.Path(dir_okay=False), help="A scenario YAML file.")
@click.option("--sides", "side_names", help=SIDES_HELP)
@click.option("--only", type=click.Choice(sides.KINDS), help=ONLY_HELP)
@click.option(
    "--count",
    "count_text",
    metavar="N|SIDE=N,...",
    help="Instances per side: one N for every side, or per side (runc=50,microvm=6), or both "
    "(10,microvm=2); default: the side's own, e.g. 50 containers, 6 microVMs.",
)
@click.option(
    "--step", type=click.IntRange(1, 500), help="Instances started between two measurements (default: count/10)."
)
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Also save the density result as JSON here.")
@click.option(
    "--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw memory and time to ready against N."
)
@click.option("--results-dir", type=click.Path(file_okay=False), help=RESULTS_HELP)
def density_cmd(
    name: str | None,
    scenario_file: str | None,
    side_names: str | None,
    only: str | None,
    count_text: str | None,
    step: int | None,
    fmt: str,
    output: str | None,
    plot_file: str | None,
    results_dir: str | None = None,
) -> None:
    """Start many instances per side, all running, and fit their host memory against N."""
    choice = _choice(side_names, only)
    count, counts = density_run.parse_counts(count_text, choice.names)
    if plot_file:
        plot.require()
    if output:
        files.check_writable(output, "--output")  # before minutes of measuring
    keep_in = results.check(results.directory(results_dir))
    check_cache()
    scenario = _load(name, scenario_file)
    run_id = lifecycle.new_run_id()
    click.echo(f"explorer density: run {run_id} (its containers and domains are labelled with it)", err=True)
    with Steps() as steps:
        doc = density_run.run(scenario, choice, count, step, steps, run_id, counts=counts)
    click.echo(density_report.render(doc, fmt), nl=False)
    if output:
        files.write_text(output, results.written(doc), "the density result")
    if plot_file:
        density_plot.write(doc, plot_file)
    click.echo(f"kept: {results.keep(doc, keep_in)}", err=True)
    failed = {
        name: side.stopped.reason
        for name, side in doc.sides.items()
        if side.stopped is not None and side.stopped.by == "error"
    }
    if failed:  # the figures up to the failure are shown and saved; the exit code says it failed
        raise ExplorerError("; ".join(f"side {name} stopped: {why}" for name, why in failed.items()))


@dataclasses.dataclass(frozen=True)
class Keep:
    """Where a shown result goes besides the terminal: the results directory (None: a result
    read back, already kept), a page asked for, and how much the terminal shows."""

    folder: Path | None
    html: str | None = None
    detail: bool = False


def _show(result: Result, fmt: str, plot_file: str | None, output: str | None = None, keep: Keep = Keep(None)) -> None:
    """The claims judged from the figures, the report in `fmt` on stdout (only it: what was kept
    goes to stderr), then the result saved where asked, kept with its page, the page and the
    plot where asked; the paths of what was kept come last."""
    result = claims.judged(result)
    click.echo(report.render(result, fmt, fit.terminal_width(), keep.detail), nl=False)
    if plot_file:
        plot.write(result, plot_file)
    if output:
        files.write_text(output, results.written(result), "the result")
    written = []
    if keep.folder is not None:
        kept = results.keep(result, keep.folder)
        written += [("kept", kept), ("page", _write_page([("", result)], str(kept.with_suffix(".html"))))]
    if keep.html:
        written.append(("page", _write_page([("", result)], keep.html)))
    for what, path in written:
        click.echo(f"{what}: {path}", err=True)


def _write_page(runs: list[tuple[str, Result]], path: str) -> Path:
    """The results page for one run, or the compare view for several."""
    page.write(runs, path)
    return Path(path)


@main.command()
@click.argument("paths", metavar="FILES...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True)
def compare(paths: tuple[str, ...], fmt: str) -> None:
    """Put saved results side by side (other hosts, CI runners): one column per run."""
    labels = comparison.labels_for(list(paths))
    runs = [(label, claims.judged(document.load_result(path))) for label, path in zip(labels, paths)]
    click.echo(comparison.render_compare(runs, fmt), nl=False)


@main.command()
@click.option("--cache", is_flag=True, help="Also remove cached images, root filesystems and disks.")
def clean(cache: bool) -> None:
    """Remove every container, domain and file explorer labelled (sparing a live run's), and
    what dead builds left; exit 3 if a side could not be reached."""
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
    rows, ok = diagnose()
    click.echo(tabulate(rows, headers=["check", "status", "details"]))
    if not ok:
        raise SystemExit(3)


def cli() -> None:
    """Entry point: run the click group, turning ExplorerError into a message and an exit
    code, and an interrupt (SIGINT, SIGTERM, SIGHUP) into 128 + its signal."""
    interrupts.install()  # SIGHUP: a closed terminal, a dropped ssh session
    debug = "--debug" in sys.argv[1:]
    try:
        code = main.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail(Interrupted(signal.SIGINT), debug)
    except Interrupted as exc:
        _fail(exc, debug)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExplorerError as exc:
        _fail(exc, debug)


def _fail(exc: ExplorerError | Interrupted, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc)
    click.echo(f"Error: {exc}", err=True)
    hint = getattr(exc, "hint", None)
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    sys.exit(exc.exit_code)


if __name__ == "__main__":
    cli()
