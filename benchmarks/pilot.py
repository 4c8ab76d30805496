"""Pilot: how many full-batch epochs decide trainability (docs/performance.md, "Pilot:
epochs that decide trainability"; issue 26, item 4).

Trains LeNet-300-100 on Fashion-MNIST in each variant under temperature scaling with the
package's own code, as the pipeline's training cells do: initial parameters, subsets and
data from ``goldilocks.initial`` / ``goldilocks.data`` (the seed's ``params``, ``subset``
and ``test`` streams), full-batch GD by ``goldilocks.training.train_batched`` (engine
``auto``: ``loop`` on the CPU, bit-identical to a cell alone), ``lr = lr_base x T``
(``grid.lr_factor``, docs/method.md section 5.3), float32. Per variant it trains at
``T = 1``, at the temperature zone's upper edge ``U``, and at ``10 U`` and ``100 U``
(canonical scales), every seed and base rate, for ``--epochs`` epochs on ``--train-size``
images, logging every epoch of ``--n-list`` and twice each.

The zone's upper edge ``U`` per variant is measured here by default: a curvature sweep
(``goldilocks.curvature.measure``, float32, batch 128, d = 50, the same seeds) over
``--zone-points`` temperatures in ``[10^-3L, 10^3L]``, and ``goldilocks.zone``'s zone
(threshold 0.5, grid points). With ``--zone results/goldilocks_zone.parquet`` it is read
from a finished run instead (its ``lenet300100``/``fmnist``/``temperature`` rows). A
measured zone that reaches the sweep's largest T has no upper edge within it; the script
says so (``zone_open_above`` in ``pilot.json``) and trains from that largest T.

The rule (``pilot_table``, ``choose_n``), on train accuracy (docs/method.md section 5.2):

- ``acc(v, T, N)``: the best over base rates of the seed-mean train accuracy after N
  epochs; a cell that diverged by epoch N counts with its epoch-0 accuracy (training
  gained nothing, as the claims count it).
- level: half-way between chance (0.1) and ``acc(v, 1, epochs)``, per variant.
- cliff(N): the largest trained T such that every trained T up to it has
  ``acc(v, T, N) >= level``; none when the smallest fails.
- N qualifies for a variant when (a) cliff(N) and cliff(2N) are the same grid point (on
  this grid, moving less than one step means not moving) and (b)
  ``|acc(v, 1, N) - acc(v, 1, epochs)| <= 0.01``; only N with ``2N <= epochs`` are
  candidates. A variant's chosen N is the smallest N that qualifies together with every
  larger candidate (an early lucky match followed by a move does not count); the pilot's
  N is the largest over the variants, none if one variant has none.

Writes to ``--out``: ``runs.csv`` (every logged row), ``table.csv`` (variant x N),
``pilot.json`` (settings, zone edges and their source, trained T, levels, the choice,
measured seconds per cell-epoch). A rerun with the same ``--out`` and settings skips the
(variant, seed) batches ``runs.csv`` already holds (so a run cut short resumes at its
last finished batch); with other settings it stops.

    python -m benchmarks.pilot --out results/pilot            # the full pilot, hours
    python -m benchmarks.pilot --variants homogeneous,bias --epochs 100 --train-size 512
    python -m benchmarks.pilot --quick --out /tmp/pilot       # seconds (tests)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd

ARCH, DATASET = "lenet300100", "fmnist"
N_LIST = (10, 20, 50, 100, 200, 500, 1000)
CHANCE = 0.1  # ten classes
ACC_TOL = 0.01  # one accuracy point
DECADES = (1, 10, 100)  # trained T: 1 and U times these
RUN_KEYS = ["variant", "temperature", "lr_base", "seed"]
#: Cell-epochs of the full pilot: 5 variants x 4 T x 2 base rates x 2 seeds x 1000 epochs.
FULL_CELL_EPOCHS = 5 * (len(DECADES) + 1) * 2 * 2 * 1000


def candidates(n_list, epochs: int) -> list[int]:
    """The N that can be judged: those with ``2N <= epochs``, ascending."""
    return sorted({n for n in n_list if n > 0 and 2 * n <= epochs})


def logged_epochs(n_list, epochs: int) -> list[int]:
    """Every epoch the rule reads: 0, each candidate N and 2N, and the last."""
    wanted = {0, epochs}
    for n in candidates(n_list, epochs):
        wanted |= {n, 2 * n}
    return sorted(wanted)


def trained_temperatures(upper: float) -> list[float]:
    """``T = 1, U, 10 U, 100 U`` (canonical scales, sorted, de-duplicated); ``[1]``
    without a zone (``U`` NaN)."""
    from goldilocks.grid import canonical_scale

    temps = {1.0}
    if math.isfinite(upper):
        temps |= {canonical_scale(upper * d) for d in DECADES}
    return sorted(temps)


def accuracy_at(runs: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """Per cell (``RUN_KEYS``) and epoch in ``epochs``: its train accuracy, or its epoch-0
    accuracy when it diverged at or before that epoch."""
    out = []
    for key, cell in runs.groupby(RUN_KEYS, sort=True):
        rows = cell.set_index("epoch")
        start = float(rows.loc[0, "train_acc"])
        gone = cell["diverged_epoch"].dropna()
        gone_at = int(gone.iloc[0]) if len(gone) else math.inf
        for e in epochs:
            ok = e < gone_at and e in rows.index
            acc = float(rows.loc[e, "train_acc"]) if ok else start if gone_at <= e else math.nan
            out.append({**dict(zip(RUN_KEYS, key, strict=True)), "epoch": e, "acc": acc})
    return pd.DataFrame(out)


def best_accuracy(per_cell: pd.DataFrame) -> pd.DataFrame:
    """``acc(v, T, N)``: the seed mean per base rate, then the best base rate; columns
    ``variant, temperature, epoch, acc, lr_base`` (the base rate that won)."""
    mean = per_cell.groupby(["variant", "temperature", "epoch", "lr_base"], as_index=False)[
        "acc"
    ].mean()
    mean = mean.sort_values(["acc", "lr_base"], ascending=[False, True], na_position="last")
    best = mean.groupby(["variant", "temperature", "epoch"], as_index=False).head(1)
    return best.sort_values(["variant", "temperature", "epoch"]).reset_index(drop=True)


def cliff_index(temps: list[float], accs: list[float], level: float) -> int:
    """Index into ascending ``temps`` of the largest T whose accuracy and that of every
    smaller trained T is at least ``level``; -1 when the smallest already fails."""
    index = -1
    for i, acc in enumerate(accs):
        if not acc >= level:  # NaN fails too
            break
        index = i
    return index


def pilot_table(best: pd.DataFrame, n_list, epochs: int) -> pd.DataFrame:
    """Variant x candidate N: the cliff at N and 2N, the accuracy at T = 1 at N and at
    ``epochs``, and whether N passes (a) ``stable``, (b) ``close`` and ``qualifies`` (both).

    ``best``: ``acc(v, T, N)`` as :func:`best_accuracy` gives it (T = 1 among the T).
    """
    rows = []
    for variant, frame in best.groupby("variant", sort=False):
        rows += _variant_rows(variant, frame, n_list, epochs)
    return pd.DataFrame(rows)


def _variant_rows(variant: str, frame: pd.DataFrame, n_list, epochs: int) -> list[dict]:
    """:func:`pilot_table`'s rows of one variant."""
    acc = frame.set_index(["temperature", "epoch"])["acc"]
    temps = sorted(frame["temperature"].unique())
    final = float(acc.get((1.0, epochs), math.nan))
    level = CHANCE + 0.5 * (final - CHANCE) if final > CHANCE else math.nan
    cliff = {
        n: cliff_index(temps, [acc.get((t, n), math.nan) for t in temps], level)
        for n in logged_epochs(n_list, epochs)
    }
    rows = []
    for n in candidates(n_list, epochs):
        at_n, at_2n = cliff[n], cliff[2 * n]
        acc1 = float(acc.get((1.0, n), math.nan))
        stable = at_n == at_2n and at_n >= 0
        close = abs(acc1 - final) <= ACC_TOL
        rows.append(
            {
                "variant": variant,
                "N": n,
                "cliff_T": temps[at_n] if at_n >= 0 else math.nan,
                "cliff_T_2N": temps[at_2n] if at_2n >= 0 else math.nan,
                "cliff_at_top": at_n == len(temps) - 1,  # no cliff within the trained T
                "acc_T1": acc1,
                "acc_T1_final": final,
                "level": level,
                "stable": stable,
                "close": close,
                "qualifies": stable and close,
            }
        )
    return rows


def choose_n(table: pd.DataFrame) -> tuple[dict[str, int | None], int | None]:
    """Per variant the smallest N that qualifies together with every larger candidate
    (None: none does), and the pilot's N, the largest of them (None if any is None)."""
    chosen: dict[str, int | None] = {}
    for variant, frame in table.groupby("variant", sort=False):
        frame = frame.sort_values("N")
        pick = None
        for n, ok in reversed(list(zip(frame["N"], frame["qualifies"], strict=True))):
            if not ok:
                break
            pick = int(n)
        chosen[variant] = pick
    values = list(chosen.values())
    overall = None if not values or None in values else max(values)
    return chosen, overall


def zone_uppers_measured(data, variants, seeds, points, device) -> tuple[dict, pd.DataFrame]:
    """``U`` per variant from a curvature sweep over ``points`` temperatures in
    ``[10^-3L, 10^3L]`` (``goldilocks.curvature.measure`` in float32, the seeds' init
    states) and ``goldilocks.zone.goldilocks_zone`` (threshold 0.5, grid points)."""
    import torch

    from goldilocks import curvature, initial
    from goldilocks.grid import scales_of
    from goldilocks.variants import describe
    from goldilocks.zone import goldilocks_zone

    spec = {"temperature": {"log10_min": -3, "log10_max": 3, "num": points, "times_depth": True}}
    rows = []
    for variant in variants:
        for seed in seeds:
            state = initial.draw(ARCH, DATASET, variant, seed, data, 128, 50)
            for t in scales_of(spec, "temperature", describe(ARCH, variant)):
                keys = (ARCH, DATASET, variant, 1.0, t)
                problem = initial.problem(state, *keys, device, torch.float32)
                methods = curvature.resolve_methods("auto", "auto", device, problem.params)
                metrics, _ = curvature.measure(problem, *methods)
                rows.append({"architecture": ARCH, "dataset": DATASET, "variant": variant,
                             "scaling": "temperature", "scale": t, "seed": seed,
                             "hessian_trace_ratio": metrics["hessian_trace_ratio"]})  # fmt: skip
    sweep = pd.DataFrame(rows)
    zone = goldilocks_zone(sweep, 0.5)
    return dict(zip(zone["variant"], zone["upper"].astype(float), strict=True)), sweep


def zone_uppers_read(path: str, variants) -> dict:
    """``U`` per variant from a run's ``goldilocks_zone.parquet``."""
    from goldilocks.io import read_parquet

    if not Path(path).is_file():
        raise SystemExit(f"pilot.py: --zone {path}: no such file")
    zone = read_parquet(path)
    hit = zone[(zone["architecture"] == ARCH) & (zone["dataset"] == DATASET)]
    hit = hit[hit["scaling"] == "temperature"].set_index("variant")["upper"]
    missing = [v for v in variants if v not in hit.index]
    if missing:
        raise SystemExit(f"pilot.py: --zone {path}: no {ARCH}/{DATASET} temperature row "
                         f"for {missing}")  # fmt: skip
    return {v: float(hit[v]) for v in variants}


def train_seed(variant, seed, temps, lrs, prepared, sizes, epochs, log_every, device):
    """Every (T, base rate) cell of one variant and seed, trained as one batch; their
    logged rows, and the batch's wall and thread-CPU seconds (with one torch thread on
    the CPU the latter is all of torch's work, without the time other processes held
    the core)."""
    import torch

    from goldilocks import initial
    from goldilocks.data import training_data
    from goldilocks.grid import lr_factor
    from goldilocks.training import TrainState, train_batched

    state = initial.draw(ARCH, DATASET, variant, seed, prepared, 128, 50)
    train_data, test_data = training_data(prepared, seed, *sizes, torch.float32, device)
    cells = [(t, lr) for t in temps for lr in lrs]
    problem = initial.problem(state, ARCH, DATASET, variant, 1.0, 1.0, device, torch.float32)
    states = [TrainState({k: v.clone() for k, v in problem.params.items()}) for _ in cells]
    rates = [lr * lr_factor("temperature", t, ARCH, variant) for t, lr in cells]
    start, cpu = time.perf_counter(), time.thread_time()
    train_batched(problem.model, states, train_data, test_data, [t for t, _ in cells], rates,
                  epochs, log_every)  # fmt: skip
    seconds = (time.perf_counter() - start, time.thread_time() - cpu)
    rows = [
        {"variant": variant, "temperature": t, "lr_base": lr, "seed": seed, "lr": rate, **row}
        for (t, lr), rate, s in zip(cells, rates, states, strict=True)
        for row in s.rows
    ]
    return rows, seconds


def load_data(path: str, mirrors: list[str], root: str):
    """The prepared Fashion-MNIST: ``path`` (the pipeline's data stage output) when it
    exists, else built in memory by ``goldilocks.data.prepare`` from ``mirrors``."""
    from goldilocks.data import DatasetUnavailable, prepare
    from goldilocks.io import load_tensors

    if Path(path).is_file():
        return load_tensors(path), path
    try:
        return prepare(DATASET, mirrors, root, download=False), f"prepared from {mirrors}"
    except DatasetUnavailable as err:
        raise SystemExit(f"pilot.py: --data {path} missing and {err}") from None


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``--quick`` sets toy sizes (seconds) unless given explicitly."""
    from goldilocks.variants import VARIANTS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 1000 (quick: 8)")
    parser.add_argument("--train-size", type=int, default=None, help="default 2048 (quick: 64)")
    parser.add_argument("--test-size", type=int, default=None, help="default 1000 (quick: 64)")
    parser.add_argument("--seeds", default=None, help="default 0,1 (quick: 0)")
    parser.add_argument("--lr-base", default="0.1,1.0", help="base rates eta0")
    parser.add_argument("--variants", default=",".join(VARIANTS[:5]))
    parser.add_argument("--n-list", default=None, help="default 10,20,50,100,200,500,1000 "
                        "(quick: 1,2,4)")  # fmt: skip
    parser.add_argument("--zone", default=None, help="read U from this goldilocks_zone.parquet")
    parser.add_argument("--zone-points", type=int, default=None,
                        help="curvature sweep points (default 11, quick 3)")  # fmt: skip
    parser.add_argument("--data", default=f"results/data/{DATASET}.pt")
    parser.add_argument("--mirrors", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--root", default="results/data/torchvision")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--out", default="results/pilot")
    parser.add_argument("--quick", action="store_true", help="toy sizes, for tests")
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, toy in (("epochs", 1000, 8), ("train_size", 2048, 64), ("test_size", 1000, 64),
                            ("seeds", "0,1", "0"), ("n_list", ",".join(map(str, N_LIST)), "1,2,4"),
                            ("zone_points", 11, 3)):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, toy if quick else full)
    for v in args.variants.split(","):
        if v not in VARIANTS:
            parser.error(f"--variants: unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if not candidates(parse_ints(args.n_list), args.epochs):
        parser.error(f"--n-list: no N with 2N <= --epochs {args.epochs}")
    return args


def parse_ints(text: str) -> list[int]:
    """``"10,20"`` -> ``[10, 20]``."""
    return [int(x) for x in str(text).split(",")]


def no_nan(value):
    """``value`` with every NaN float (nested in dicts and lists) as None, for JSON."""
    if isinstance(value, dict):
        return {str(k): no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def print_table(table: pd.DataFrame, chosen: dict, overall) -> None:
    print(f"\n{'variant':12} {'N':>5} {'cliff T':>10} {'at 2N':>10} {'acc T=1':>8} "
          f"{'final':>6} {'(a)':>4} {'(b)':>4}")  # fmt: skip
    for r in table.itertuples():
        top = "+" if r.cliff_at_top else " "
        print(f"{r.variant:12} {r.N:5d} {r.cliff_T:9.4g}{top} {r.cliff_T_2N:10.4g} "
              f"{100 * r.acc_T1:8.1f} {100 * r.acc_T1_final:6.1f} "
              f"{'yes' if r.stable else 'no':>4} {'yes' if r.close else 'no':>4}")  # fmt: skip
    print("cliff T+: every trained T passes, the cliff lies above the largest")
    for variant, n in chosen.items():
        print(f"chosen N {variant}: {n if n is not None else 'none (train longer)'}")
    print(f"pilot's N: {overall if overall is not None else 'none qualifies'}")


def main(argv=None) -> None:
    args = parse_args(argv)
    from benchmarks.timing import device_or_exit
    from goldilocks.io import write_atomic
    from goldilocks.runtime import configure_torch

    device = device_or_exit(args.device)
    configure_torch(args.threads if device.type == "cpu" else 0)
    variants, seeds = args.variants.split(","), parse_ints(args.seeds)
    lrs = [float(x) for x in args.lr_base.split(",")]
    n_list, epochs = parse_ints(args.n_list), args.epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prepared, data_source = load_data(args.data, args.mirrors.split(","), args.root)

    start = time.perf_counter()
    open_above: list[str] = []  # zone up to the sweep's largest T: U is the sweep's end
    if args.zone:
        uppers, zone_source = zone_uppers_read(args.zone, variants), args.zone
    else:
        uppers, sweep = zone_uppers_measured(prepared, variants, seeds, args.zone_points, device)
        sweep.to_csv(out / "zone_sweep.csv", index=False)
        zone_source = f"measured: {args.zone_points} temperatures x seeds {seeds}"
        ends = sweep.groupby("variant")["scale"].max()
        open_above = [v for v in variants if uppers[v] == ends[v]]
    zone_seconds = time.perf_counter() - start
    temps = {v: trained_temperatures(uppers[v]) for v in variants}
    for v in variants:
        end = " (the zone reaches the sweep's end: U is not an edge)" if v in open_above else ""
        print(f"{v}: zone upper edge U = {uppers[v]:.4g}{end} ({zone_source}); "
              f"trained T {temps[v]}")  # fmt: skip

    runs_path, settings_path = out / "runs.csv", out / "settings.json"
    settings = no_nan({"epochs": epochs, "train_size": args.train_size,
                       "test_size": args.test_size, "lr_base": lrs, "n_list": n_list,
                       "device": str(device), "temperatures": temps})  # fmt: skip
    runs = pd.DataFrame()
    if runs_path.is_file():
        before = json.loads(settings_path.read_text()) if settings_path.is_file() else None
        if before != settings:
            raise SystemExit(f"pilot.py: {runs_path} was trained with other settings "
                             f"({settings_path}); use another --out")  # fmt: skip
        runs = pd.read_csv(runs_path)
    settings_path.write_text(json.dumps(settings, indent=1))
    log_every = math.gcd(*logged_epochs(n_list, epochs))
    sizes = (args.train_size, args.test_size)
    train_seconds, cpu_seconds, cell_epochs = 0.0, 0.0, 0
    for v in variants:
        for seed in seeds:
            if len(runs) and ((runs["variant"] == v) & (runs["seed"] == seed)).any():
                continue  # finished in an earlier run with this --out
            rows, seconds = train_seed(v, seed, temps[v], lrs, prepared, sizes, epochs,
                                       log_every, device)  # fmt: skip
            runs = pd.concat([runs, pd.DataFrame(rows)], ignore_index=True)
            write_atomic(runs_path, lambda tmp, r=runs: r.to_csv(tmp, index=False))
            train_seconds, cpu_seconds = train_seconds + seconds[0], cpu_seconds + seconds[1]
            cell_epochs += len(temps[v]) * len(lrs) * epochs
            print(f"{v} seed {seed}: {len(temps[v]) * len(lrs)} cells x {epochs} epochs "
                  f"in {seconds[0]:.1f} s ({seconds[1]:.1f} s thread CPU)", flush=True)  # fmt: skip

    runs = runs[runs["variant"].isin(variants) & runs["seed"].isin(seeds)]
    best = best_accuracy(accuracy_at(runs, logged_epochs(n_list, epochs)))
    table = pilot_table(best, n_list, epochs)
    order = {v: i for i, v in enumerate(variants)}
    table = table.sort_values(["variant", "N"], key=lambda c: c.map(order) if c.name ==
                              "variant" else c, kind="stable").reset_index(drop=True)  # fmt: skip
    chosen, overall = choose_n(table)
    print_table(table, chosen, overall)
    per_cell_epoch = train_seconds / cell_epochs if cell_epochs else math.nan
    cpu_per_cell_epoch = cpu_seconds / cell_epochs if cell_epochs else math.nan
    full = FULL_CELL_EPOCHS * cpu_per_cell_epoch * 2048 / args.train_size
    print(f"{per_cell_epoch * 1e3:.2f} ms wall, {cpu_per_cell_epoch * 1e3:.2f} ms thread CPU "
          f"per cell-epoch on {args.train_size} images; the full pilot (5 variants x 4 T x "
          f"2 rates x 2 seeds x 1000 epochs, 2048 images) at that CPU rate, scaled "
          f"linearly in images: {full / 3600:.1f} h")  # fmt: skip
    table.to_csv(out / "table.csv", index=False)
    doc = {
        "architecture": ARCH, "dataset": DATASET, "data": data_source, "device": str(device),
        "threads": args.threads, "epochs": epochs, "train_size": args.train_size,
        "test_size": args.test_size, "seeds": seeds, "lr_base": lrs, "n_list": n_list,
        "candidates": candidates(n_list, epochs), "chance": CHANCE, "acc_tol": ACC_TOL,
        "zone_source": zone_source, "zone_upper": uppers, "zone_open_above": open_above,
        "temperatures": temps,
        "levels": table.groupby("variant")["level"].first().to_dict(),
        "chosen_per_variant": chosen, "chosen_n": overall, "zone_seconds": zone_seconds,
        "train_seconds": train_seconds, "seconds_per_cell_epoch": per_cell_epoch,
        "cpu_seconds_per_cell_epoch": cpu_per_cell_epoch,
    }  # fmt: skip
    (out / "pilot.json").write_text(json.dumps(no_nan(doc), indent=1))


if __name__ == "__main__":
    main()
