"""The design runs behind the MQAR proxy's numbers (docs/evaluation.md, "How the proxy was chosen").

Each job trains one mixer once (one seed, one learning rate, one recipe) and appends a JSON line
with its test and validation accuracies, its accuracy curve and its CPU seconds; a job already
in the output file is skipped, so an interrupted sweep resumes. Two worker processes with one
torch thread each (the machine has two cores):

    python benchmarks/sanity/bench_mqar_design.py --mixers examples/deltanet.lin \\
        --lrs 3e-3 1e-2 --seeds 0 1 --steps 1200 --out runs/design/steps.jsonl

`--salts 0 1` trains each mixer twice per seed, the second from another initialisation on the
same data (an A/A pair, as `linarch calibrate` makes one); `--spread` then prints, for every
test setting and their mean, each arm's mean and the mean and SD of the paired differences
between arms over the seeds they share: the seed-to-seed spread a score would carry.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path


def job_key(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


def run_job(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from linarch.evaluation.mixers import mixer_from_dsl
    from linarch.evaluation.mqar import MQARSetting
    from linarch.evaluation.problems import ModelShape, MQARProblem
    from linarch.evaluation.trainer import TrainConfig, train_problem

    spec = replace(mixer_from_dsl(job["mixer"]), init_salt=job.get("salt", 0))
    layers = tuple(job["layers"].split("+")) if job["layers"] else ()
    shape = ModelShape(job["d"], len(layers) or 2, job["heads"], use_mlp=False,
                       block_kinds=layers).with_mixer_kwargs(**job.get("kwargs", {}))
    vocab = job["vocab"]
    # "train": one [seq, pairs], or a list of them (a mixture, split evenly).
    first, *mix = (job["train"] if isinstance(job["train"][0], list) else [job["train"]])
    tests = tuple(MQARSetting(vocab, *t) for t in job["tests"])
    problem = MQARProblem(MQARSetting(vocab, *first), shape, job["steps"] * job["batch"],
                          job["n_test"], tests=tests, num_valid=job["n_valid"],
                          mix=tuple(MQARSetting(vocab, *t) for t in mix))
    config = TrainConfig(steps=job["steps"], batch_size=job["batch"], lr=job["lr"],
                         weight_decay=0.1, eval_every=max(1, job["steps"] // job["evals"]),
                         seed=job["seed"])
    cpu, wall = time.process_time(), time.perf_counter()
    result, model = train_problem(problem, spec, shape, config)
    params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    return {"job": job, "outcome": result.outcome.value, "error": result.error[-500:],
            "metrics": result.metrics, "params": params,
            "curve": result.curves.to_json()["eval"].get("accuracy", []),
            "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}


def spread(rows: list[dict]) -> list[str]:
    """Per test metric: each arm's mean, and the paired differences between arms by seed."""
    arms: dict[str, dict[int, dict]] = {}
    for row in rows:
        j = row["job"]
        arm = f"{Path(j['mixer']).stem} lr {j['lr']:g} steps {j['steps']}" + \
            (f" salt {j['salt']}" if j.get("salt") else "")
        arms.setdefault(arm, {})[j["seed"]] = row["metrics"]
    names = sorted({k for runs in arms.values() for m in runs.values() for k in m
                    if k.startswith("accuracy")})
    pairs = [(a, b) for i, a in enumerate(arms) for b in list(arms)[i + 1:]]
    lines = []
    for metric in names:
        lines.append(f"{metric}: " + ", ".join(
            f"{arm} {statistics.fmean(m[metric] for m in runs.values()):.3f}"
            for arm, runs in arms.items()))
        for a, b in pairs:
            diffs = [arms[a][s][metric] - arms[b][s][metric]
                     for s in sorted(arms[a].keys() & arms[b].keys())]
            if len(diffs) > 1:
                lines.append(f"  {a} - {b}: {statistics.fmean(diffs):+.3f}, SD "
                             f"{statistics.stdev(diffs):.3f} over {len(diffs)} seeds")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", nargs="+", required=True)
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", nargs="+", type=int, default=[1200])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--train", nargs="+", default=["64,4"],
                        help="seq_len,pairs; several: a mixture of equal parts")
    parser.add_argument("--tests", nargs="+", default=["64,16", "128,32"])
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--layers", default="base_conv+mixer")
    parser.add_argument("--kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="the mixer's own keywords (a width from parameter matching)")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--evals", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--salts", nargs="+", type=int, default=[0],
                        help="initialisation salts: 0 1 trains an A/A pair per seed")
    parser.add_argument("--spread", action="store_true",
                        help="print the paired spread of the runs in --out, train nothing")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.spread:
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        print("\n".join(spread([r for r in rows if r["outcome"] == "ok"])))
        return 0
    pair = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    kwargs = {k: (float(v) if "." in v else int(v))
              for k, v in (item.split("=", 1) for item in args.kwargs)}
    train = pair(args.train[0]) if len(args.train) == 1 else [pair(t) for t in args.train]
    jobs = [{"mixer": m, "lr": lr, "seed": s, "steps": n, "batch": args.batch,
             "vocab": args.vocab, "train": train, "tests": [pair(t) for t in args.tests],
             "d": args.d, "heads": args.heads, "layers": args.layers, "n_test": args.n_test,
             "n_valid": args.n_valid, "evals": args.evals, **({"kwargs": kwargs} if kwargs else {}),
             **({"salt": salt} if salt else {})}
            for n in args.steps for s in args.seeds for m in args.mixers for lr in args.lrs
            for salt in args.salts]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {job_key(json.loads(line)["job"]) for line in args.out.read_text().splitlines()
                if line.strip()}
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(todo)} job(s) to run, {len(jobs) - len(todo)} already in {args.out}", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Killing the sweep (not its process group) must not leave its workers training on.
    from linarch.evaluation.compare import exit_with_parent

    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1,
                                      initializer=exit_with_parent,
                                      initargs=(os.getpid(),)) as pool:
        for row in pool.imap_unordered(run_job, todo):
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            j, m = row["job"], row["metrics"]
            print(f"{Path(j['mixer']).stem} lr {j['lr']:g} seed {j['seed']} steps {j['steps']}: "
                  f"{row['outcome']} test {m.get('accuracy', float('nan')):.3f} valid "
                  f"{m.get('valid_accuracy', float('nan')):.3f} ({row['cpu_s']:.0f} cpu-s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
