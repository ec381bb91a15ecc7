"""``python -m bench``: the command line. Each sub-command is a thin shell over one module."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from bench.heap import keep_heap
from bench.paths import REPORTS_DIR
from bench.quiet import quiet_third_party
from bench.ratecontrol import MODES


def _floats(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"targets must be comma-separated numbers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"targets must be positive bpp values, got {text!r}")
    return vals


def _counts(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"counts must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"counts must be integers >= 1, got {text!r}")
    return vals


def _pixels(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--max-pixels needs a positive number of pixels, got {text!r}")
    return n


MAX_PIXELS_HELP = "refuse files and images above this many pixels (default 67108864 = 8192², or $BENCH_MAX_PIXELS)"
NO_SANDBOX_HELP = ("run the codec's processes without the sandbox (bubblewrap), e.g. where namespaces are "
                   "forbidden; every row this produces says sandbox=off (docs/sandbox.md)")


def _no_sandbox(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-sandbox", action="store_true", default=os.environ.get("NO_SANDBOX", "") not in ("", "0"),
                   help=NO_SANDBOX_HELP + "; default: $NO_SANDBOX")


def _fmt(x) -> str:
    if x is None or x == "" or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


RANGE_DATASETS = ("kodak", "clic2025-valid")


def _bpp_range(reports: Path, dataset: str, name: str) -> str:
    """The lowest and highest set bpp of a stored run's RD sweep ('' without a run)."""
    from bench.results import read_csv

    path = reports / dataset / "runs" / name / "rd.csv"
    bpps = [float(r["bpp"]) for r in read_csv(path)] if path.exists() else []
    return f"{min(bpps):.3f}–{max(bpps):.3f}" if bpps else ""


def cmd_list(args) -> int:
    from bench.dataspec import DATASETS
    from bench.submission import discover

    print("submissions:")
    subs = discover(include_unready=True)
    width = max(26, *map(len, subs))     # a long name must not push its description out of line
    for name, sub in subs.items():
        tag = {"training": " [training: no weights yet]",
               "external": " [external weights: see its README]"}.get(sub.status, "")
        print(f"  {name:<{width}} {sub.description}{tag}")
        ranges = [f"{ds} {r}" for ds in RANGE_DATASETS if (r := _bpp_range(Path(args.reports), ds, name))]
        if ranges:
            print(f"  {'':<{width}} bpp range of its operating points: {'; '.join(ranges)}")
    print("\ndatasets:")
    for name, spec in DATASETS.items():
        print(f"  {name:<26} {spec.description}")
    print(f"  {'folder:PATH':<26} any folder of PNG/JPEG images")
    print(f"  {'hf:REPO[:SPLIT]':<26} a Hugging Face hub dataset (needs the network once)")
    return 0


def cmd_run(args) -> int:
    from bench.report import build_report
    from bench.run import run_benchmark

    res = run_benchmark(args.submission, args.dataset, args.targets, args.mode, args.objective, args.jobs,
                        args.limit, Path(args.reports), args.backend, args.scheduler, progress=not args.no_progress,
                        allow_16bit=args.allow_16bit, probe=args.probe, device=args.device,
                        sandboxed=not args.no_sandbox)
    build_report(res.run_dir.parent.parent)
    print(f"\n{args.submission} on {args.dataset}: {res.computed} jobs encoded, {res.estimated} points estimated, "
          f"{res.seconds:.1f} s")
    cols = ["target_bpp", "mode", "objective", "status", "bpp", "msssim", "msssim_db", "psnr", "bytes",
            "budget_bytes", "note"]
    print("  ".join(f"{c:>12}" for c in cols[:-1]) + "  note")
    for r in res.rows:
        print("  ".join(f"{_fmt(r.get(c)):>12}" for c in cols[:-1]) + "  " + (r.get("note") or ""))
    for e in res.errors:
        print(f"warning: {e}", file=sys.stderr)
    print(f"report: {Path(args.reports) / res.run_dir.parent.parent.name / 'leaderboard.html'}")
    return 0


def cmd_report(args) -> int:
    from bench.report import build_report

    folders = [Path(args.reports) / args.dataset] if args.dataset else \
        sorted(p for p in Path(args.reports).iterdir() if (p / "runs").is_dir())
    for folder in folders:
        for name, path in build_report(folder, bd_anchor=args.bd_anchor).items():
            print(f"{name:>16}: {path}")
    return 0


def cmd_screenshots(args) -> int:
    from bench.report.screenshots import take_screenshots

    folders = [Path(args.reports) / args.dataset] if args.dataset else \
        sorted(p for p in Path(args.reports).iterdir() if (p / "leaderboard.html").is_file())
    for folder in folders:
        for path in take_screenshots(folder):
            print(path)
    return 0


def cmd_decode(args) -> int:
    from bench.decode import decode_folder

    expected = None
    if args.dataset:
        from bench.data import open_dataset

        expected = {im.id: (im.height, im.width) for im in open_dataset(args.dataset).images()}
    n = decode_folder(Path(args.bitstreams), args.submission, Path(args.out), expected, args.device,
                      sandboxed=not args.no_sandbox)
    print(f"decoded {n} files into {args.out}")
    return 0


def _differs(bit_identical: str) -> bool:
    """Not every file decoded bit-identically, or the files were refused (another device)."""
    if bit_identical.startswith("refused"):
        return True
    same, _, total = bit_identical.partition("/")
    return bool(total) and same != total


EXIT_FILES_MISSING = 3


def cmd_verify(args) -> int:
    from bench.data import open_dataset
    from bench.report import build_report

    if args.rerun:
        return _verify_rerun(args)
    from bench.verify import MISSING, how_to_get_files, verify_dataset

    if args.publish:          # the perceptual columns of the rows whose files are here
        from bench.rerun import measure_published

        measure_published(Path(args.reports), args.dataset, args.submission, not args.no_sandbox,
                          log=lambda m: print(m, file=sys.stderr))

    rows = verify_dataset(Path(args.reports), args.dataset, args.submission, sandboxed=not args.no_sandbox)
    missing = [r for r in rows if r["bit_identical"] == MISSING]
    bad = [r for r in rows if r not in missing and (
        r["files"] != r["images"] or r["bytes_on_disk"] != r["bytes_reported"] or r["psnr_diff_db"] > 0.01
        or _differs(r["bit_identical"]))]
    for r in rows:
        head = f"{r['submission']:>24} {r['mode']:>9} {r['objective']:>6} {r['target_bpp']:>6}  "
        if r in missing:
            print(head + f"files not present ({r['files']} of {r['images']})")
            continue
        print(head + f"files {r['files']}/{r['images']}  bytes {r['bytes_on_disk']}/{r['bytes_reported']}  "
              f"PSNR {r['psnr_recomputed']:.4f} (reported {r['psnr_reported']:.4f})  "
              f"bit-identical {r['bit_identical']}")
    checked = len(rows) - len(missing)
    print(f"{checked - len(bad)} of {checked} rows with their files reproduce from them (PSNR within 0.01 dB)")
    name = open_dataset(args.dataset).name
    for sub in dict.fromkeys(r["submission"] for r in missing):
        print(f"files not present for {sub}'s rows: {how_to_get_files(sub, args.dataset)}")
    build_report(Path(args.reports) / name)
    return 1 if bad else EXIT_FILES_MISSING if missing else 0


def _verify_rerun(args) -> int:
    """``verify --rerun``: re-code every published row's chosen points and compare the files."""
    from bench.data import open_dataset
    from bench.report import build_report
    from bench.rerun import rerun_dataset

    results = rerun_dataset(Path(args.reports), args.dataset, args.submission, publish=args.publish,
                            sandboxed=not args.no_sandbox, log=lambda m: print(m, file=sys.stderr))
    bad = [r for r in results if r["problems"]]
    for r in results:
        print(f"{r['submission']:>24} {r['mode']:>9} {r['objective']:>6} {r['target_bpp']:>6}  "
              f"re-coded {r['reproduced']}/{r['images']} identical to the published files")
        for p in r["problems"][:10]:
            print(f"{'':>26}{p}")
    print(f"{len(results) - len(bad)} of {len(results)} rows reproduce bit-exactly when re-coded here")
    if args.publish:
        from bench.rerun import measure_published

        measure_published(Path(args.reports), args.dataset, args.submission, not args.no_sandbox,
                          log=lambda m: print(m, file=sys.stderr))
        build_report(Path(args.reports) / open_dataset(args.dataset).name)
    return 1 if bad else 0


def cmd_match_code(args) -> int:
    """``match-code``: name the clean commit whose code made each row coded on a changed tree."""
    from bench.codematch import dirty_runs, match_runs
    from bench.data import open_dataset
    from bench.report import build_report

    name = open_dataset(args.dataset).name
    runs = dirty_runs(Path(args.reports), name, args.submission)
    results = match_runs(runs, log=lambda m: print(m, file=sys.stderr))
    for r in results:
        said = f"its code is {r['code_commit']}'s" if r["code_commit"] else \
            "no clean commit has its code: re-code it with `bench verify --rerun --publish`"
        print(f"{r['submission']:>24}  coded at {r['commit']} ({r['content_hash']}): {said}")
    build_report(Path(args.reports) / name)
    return 0 if all(r["code_commit"] for r in results) else 1


def cmd_export(args) -> int:
    from bench.export import export

    for path in export(Path(args.reports), args.format, Path(args.out), args.dataset):
        print(path)
    return 0


def cmd_model_count(args) -> int:
    from bench.report import build_report
    from bench.studies.model_count import model_count_table, to_markdown, write_model_count

    df = model_count_table(args.submission, args.dataset, args.targets, args.counts, args.objective,
                           Path(args.reports))
    print(to_markdown(df))
    for path in write_model_count(df, Path(args.reports) / df["dataset"].iloc[0]):
        print(f"wrote {path}")
    build_report(Path(args.reports) / df["dataset"].iloc[0])
    return 0


def cmd_ablation(args) -> int:
    from bench.data import open_dataset
    from bench.report import build_report
    from bench.studies.ablation import ablation, to_markdown, write_ablation

    dataset_dir = Path(args.reports) / open_dataset(args.dataset).name
    res = ablation(dataset_dir, args.a, args.b)
    print(to_markdown(res))
    for path in write_ablation(res, dataset_dir):
        print(f"wrote {path}")
    build_report(dataset_dir)
    return 0


def cmd_ladder(args) -> int:
    from bench.data import open_dataset
    from bench.report import build_report
    from bench.studies.ladder import ladder, to_markdown, write_ladder

    dataset_dir = Path(args.reports) / open_dataset(args.dataset).name
    res = ladder(dataset_dir, args.rungs, args.reference, args.name)
    print(to_markdown(res))
    for path in write_ladder(res, dataset_dir):
        print(f"wrote {path}")
    build_report(dataset_dir)
    return 0


def cmd_gating(args) -> int:
    from bench.data import open_dataset
    from bench.report import build_report
    from bench.studies.gating import gating_table, to_markdown, write_gating

    dataset_dir = Path(args.reports) / open_dataset(args.dataset).name
    res = gating_table(args.gated, args.dense, args.dataset, args.lambdas, args.limit, Path(args.reports))
    print(to_markdown(res))
    for path in write_gating(res, dataset_dir):
        print(f"wrote {path}")
    build_report(dataset_dir)
    return 0


def cmd_train(args) -> int:
    if not (args.submission or args.recipe):
        raise SystemExit("error: give --submission NAME or --recipe PATH")
    from bench.paths import SUBMISSIONS_DIR
    from bench.train.loop import train_run
    from bench.train.recipe import load_recipe

    recipe = load_recipe(Path(args.recipe) if args.recipe else SUBMISSIONS_DIR / args.submission / "train.toml")
    runs = [args.run] if args.run else [r.name for r in recipe.runs]
    for run in runs:
        path = train_run(recipe, run, max_steps=args.max_steps, threads=args.threads)
        print(f"{recipe.submission}/{run}: weights in {path}")
    return 0


def _thresholds(text: str) -> str:
    from bench.regress import parse_thresholds

    try:
        parse_thresholds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cmd_regress(args) -> int:
    from bench.regress import main as regress_main

    return regress_main(args)


def _reports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", default=str(REPORTS_DIR), help="reports folder")


def _dataset(p: argparse.ArgumentParser, default: str | None = "kodak", help: str | None = None) -> None:
    p.add_argument("--dataset", "-d", default=default, help=help)


def _add_run(sp) -> None:
    r = sp.add_parser("run", help="benchmark a submission: rate control to the targets, bitstreams, metrics, report")
    r.add_argument("--submission", "-s", required=True)
    _dataset(r, help="kodak, clic2025-valid, folder:PATH, hf:REPO[:SPLIT]")
    r.add_argument("--targets", type=_floats, default=[0.075, 0.15, 0.3], help="comma-separated bpp targets")
    r.add_argument("--mode", choices=list(MODES), default="clic",
                   help="clic: one budget for the whole set; per-image: every image at or below the target")
    r.add_argument("--objective", choices=["msssim", "psnr"], default="msssim", help="what clic mode maximises")
    r.add_argument("--jobs", "-j", type=int, default=1, help="parallel jobs (joblib processes or Dask workers)")
    r.add_argument("--limit", type=int, help="only the first N images (quick looks)")
    r.add_argument("--probe", choices=["estimate", "none"], default="none",
                   help="none: code every point the search looks at; estimate: search with the codec's estimates "
                        "(learned codecs) and code only the points it settles on (fewer coded jobs; not yet faster "
                        "for the shipped models, see reports/load/PROFILE.md)")
    r.add_argument("--allow-16bit", action="store_true", help="reduce 16-bit PNGs to their high 8 bits instead of "
                                                               "refusing them")
    r.add_argument("--max-pixels", type=_pixels, help=MAX_PIXELS_HELP)
    r.add_argument("--device", default=os.environ.get("DEVICE", "cpu"),
                   help="where learned codecs run their networks: cpu, cuda or cuda:N (entropy coding stays on "
                        "the CPU; default: $DEVICE or cpu)")
    r.add_argument("--backend", choices=["joblib", "dask"], default="joblib")
    _no_sandbox(r)
    r.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    _reports(r)
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_run)


def _add_files(sp) -> None:
    """The commands that read stored files: report, decode, verify."""
    rep = sp.add_parser("report", help="rebuild leaderboard.csv/html and RD plots from the stored runs")
    _dataset(rep, None, "one dataset's report (default: all)")
    rep.add_argument("--bd-anchor", help="the submission the BD-rate table compares against "
                                         "(default: the best classical codec)")
    _reports(rep)
    rep.set_defaults(fn=cmd_report)
    sc = sp.add_parser("screenshots", help="draw each dataset's page in headless Chromium at 1280 and 390 px "
                                           "into reports/<dataset>/screenshots/")
    _dataset(sc, None, "one dataset's page (default: every page)")
    _reports(sc)
    sc.set_defaults(fn=cmd_screenshots)
    d = sp.add_parser("decode", help="decode a folder of bitstreams to PNGs (recompute metrics from files alone)")
    d.add_argument("bitstreams", help="a row's bitstream folder (leaderboard.csv 'bitstreams' column)")
    d.add_argument("--submission", "-s", required=True)
    d.add_argument("--out", "-o", required=True)
    _dataset(d, None, "check each file's claimed size against the image of the same name in this dataset")
    d.add_argument("--max-pixels", type=_pixels, help=MAX_PIXELS_HELP)
    d.add_argument("--device", default=os.environ.get("DEVICE", "cpu"),
                   help="where the networks run (a file decodes on the kind of device it was coded on)")
    _no_sandbox(d)
    d.set_defaults(fn=cmd_decode)
    v = sp.add_parser("verify", help="decode every row's bitstreams and recompute its bytes and metrics")
    _dataset(v)
    v.add_argument("--submission", "-s", action="append", help="only this submission's rows (repeatable)")
    v.add_argument("--max-pixels", type=_pixels, help=MAX_PIXELS_HELP)
    v.add_argument("--rerun", action="store_true",
                   help="re-code each row's chosen points here and check that the files are the published ones "
                        "(their SHA-256, or size and decoded pixels where no hash was published)")
    v.add_argument("--publish", action="store_true",
                   help="with --rerun: write the reproduced files into the rows' bitstream folders and their "
                        "SHA-256 into per_image.csv (rows that reproduced in full only); with or without it: "
                        "measure the rows' perceptual metrics from their files into the run's CSVs")
    _no_sandbox(v)
    _reports(v)
    v.set_defaults(fn=cmd_verify)
    mc = sp.add_parser("match-code", help="for rows coded on a tree with changes: find the clean commit whose "
                                          "code has the run's content hash, and say so on the rows")
    _dataset(mc)
    mc.add_argument("--submission", "-s", action="append", help="only this submission's runs (repeatable)")
    _reports(mc)
    mc.set_defaults(fn=cmd_match_code)
    e = sp.add_parser("export", help="write the stored results in other tools' formats (compressai JSON per run, "
                                     "or one tidy CSV)")
    e.add_argument("--format", choices=["compressai", "csv-long"], required=True)
    e.add_argument("--out", "-o", required=True, help="folder to write into")
    e.add_argument("--dataset", "-d", action="append", help="only this dataset's runs (repeatable; default: all)")
    _reports(e)
    e.set_defaults(fn=cmd_export)


def _add_studies(sp) -> None:
    mc = sp.add_parser("model-count", help="one vs several models per target: best subset of k models "
                                          "(per-image choice), from the run's cached encodes")
    mc.add_argument("--submission", "-s", required=True, help="a submission with one model per operating point")
    _dataset(mc)
    mc.add_argument("--targets", type=_floats, default=[0.075, 0.15, 0.3])
    mc.add_argument("--counts", type=_counts, default=[1, 2, 4], help="comma-separated model counts")
    mc.add_argument("--objective", choices=["msssim", "psnr"], default="msssim")
    _reports(mc)
    mc.set_defaults(fn=cmd_model_count)
    ab = sp.add_parser("ablation", help="B against A, model by model (same model names): native-rate table, "
                                        "BD-rate, leaderboard rows, from the stored runs")
    ab.add_argument("a", help="the reference submission (e.g. noise_hyperprior)")
    ab.add_argument("b", help="the variant (e.g. sth_hyperprior)")
    _dataset(ab)
    _reports(ab)
    ab.set_defaults(fn=cmd_ablation)
    la = sp.add_parser("ladder", help="an ablation ladder (each submission adds one thing to the one before): "
                                      "native rates, BD-rates vs the first rung and a reference, MACs, seconds")
    la.add_argument("rungs", nargs="+", help="the submissions, first rung first (each needs a stored run)")
    la.add_argument("--reference", default="noise_hyperprior", help="a second baseline for the BD-rates")
    la.add_argument("--name", required=True, help="names the files: ablation_<name>.{csv,json,md}")
    _dataset(la)
    _reports(la)
    la.set_defaults(fn=cmd_ladder)
    ga = sp.add_parser("gating", help="gated (ECG) vs dense variable-rate model at n λ: quality drop, MAC "
                                      "reduction, sparsity per layer, unused weights, masked vs gathered decode time")
    ga.add_argument("gated", nargs="?", default="ecg_hyperprior")
    ga.add_argument("dense", nargs="?", default="bm_hyperprior")
    _dataset(ga)
    ga.add_argument("--lambdas", type=int, default=8, help="how many λ, evenly spaced in log λ")
    ga.add_argument("--limit", type=int, help="only the first N images")
    _reports(ga)
    ga.set_defaults(fn=cmd_gating)


def _add_train(sp) -> None:
    t = sp.add_parser("train", help="train (or resume) a submission's models from its train.toml")
    t.add_argument("--submission", "-s", help="train submissions/<name>/train.toml")
    t.add_argument("--recipe", help="a train.toml elsewhere (its folder receives the weights)")
    t.add_argument("--run", help="one run of the recipe (default: all, in order)")
    t.add_argument("--max-steps", type=int, help="stop after this many steps (tiny smoke runs)")
    t.add_argument("--threads", type=int, help="torch threads")
    t.set_defaults(fn=cmd_train)


def _add_regress(sp) -> None:
    g = sp.add_parser("regress", help="regression gate: re-run a fast profile, compare with stored baselines",
                      description="Re-runs every submission (or --submission ...) on a fixed profile and compares "
                                  "with reports/baselines/<profile>/<submission>.json. Exit 0: within thresholds; "
                                  "1: a regression or a missing baseline.")
    g.add_argument("--profile", default="fast", help="benchmark profile (bench/profiles.py; default: fast)")
    g.add_argument("--submission", "-s", action="append", help="only this submission (repeatable; default: all)")
    g.add_argument("--update-baseline", action="store_true",
                   help="rewrite the baselines from this run (deliberate; never done otherwise)")
    g.add_argument("--thresholds", type=_thresholds, default=None,
                   help="comma-separated limits, e.g. 'bd_rate:+1%%,msssim:-0.001,psnr:-0.05' (those are the defaults)")
    g.add_argument("--baselines", default=str(REPORTS_DIR / "baselines"), help="baselines folder (profile subfolders)")
    g.add_argument("--json", help="also write the JSON verdict here (always written to the profile's work folder)")
    g.add_argument("--no-report", action="store_true", help="skip the HTML report section")
    g.add_argument("--verbose", "-v", action="store_true", help="show every check in the table")
    _no_sandbox(g)
    g.set_defaults(fn=cmd_regress)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="CLIC-style image codec benchmark harness")
    sp = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sp.add_parser("list", help="list submissions (with the bpp range of their stored runs) and datasets")
    _reports(ls)
    ls.set_defaults(fn=cmd_list)
    for add in (_add_run, _add_files, _add_studies, _add_train, _add_regress):
        add(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_heap()
    quiet_third_party()
    if getattr(args, "max_pixels", None) is not None:
        from bench.limits import set_max_pixels

        set_max_pixels(args.max_pixels)
    from bench.distributed import SchedulerError
    from bench.errors import USER_ERRORS

    try:
        return args.fn(args)
    except (*USER_ERRORS, SchedulerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
