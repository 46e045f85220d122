#!/usr/bin/env python3
"""OneLLM's ablations on this machine (the paper's Table 7), run with `omni train onellm`.

Every run starts from scratch on the default recipe's model and data (`omni train onellm
--print-recipe`) and trains on questions and answers only (one instruction stage), so
the runs differ in one thing each:

- joint:      one UPM (3 experts, soft router) for all eight modalities, STEPS steps;
- 1-expert:   the same with one expert;
- constant:   the same with a constant router (every expert weighed equally);
- only-<m>:   a UPM for modality m alone, trained on the same signals of m that the
              joint run sees (STEPS / 8 steps of the same batch size): Table 7a's
              "separate" projection modules.

Prints a Markdown table of accuracy per modality (held-out combinations / new signals of
seen combinations, and the chance of the former), and writes
every run's JSON report to --out. Usage:

    python3 scripts/onellm_ablations.py --omni target/release/omni --out /tmp/ablations
"""

import argparse
import json
import pathlib
import subprocess
import sys

MODALITIES = ["image", "video", "audio", "point", "rgbd", "rgbn", "fmri", "imu"]


def recipe(base: str, name: str, modalities, steps: int, experts=None, soft=None) -> str:
    head = base.split("[[stages]]")[0]
    lines = []
    for line in head.splitlines():
        key = line.split("=")[0].strip()
        if key == "name" and not lines_in_table(lines):
            line = f'name = "{name}"'
        elif key == "experts" and experts is not None:
            line = f"experts = {experts}"
        elif key == "soft_router" and soft is not None:
            line = f"soft_router = {'true' if soft else 'false'}"
        lines.append(line)
    stage = "\n".join(
        [
            "[[stages]]",
            "modalities = [" + ", ".join(f'"{m}"' for m in modalities) + "]",
            'task = "questions"',
            f"steps = {steps}",
            f"eval_every = {steps}",
        ]
    )
    return "\n".join(lines) + "\n" + stage + "\n"


def lines_in_table(lines) -> bool:
    """True once a [table] header has been seen (keys after it are not top-level)."""
    return any(l.startswith("[") for l in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omni", default="target/release/omni")
    ap.add_argument("--out", default="onellm-ablations")
    ap.add_argument("--steps", type=int, default=240, help="steps of the joint runs")
    ap.add_argument("--only", nargs="*", help="run only these runs (names as above)")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = subprocess.run(
        [args.omni, "train", "onellm", "--print-recipe"], check=True, capture_output=True, text=True
    ).stdout
    runs = {
        "joint": recipe(base, "onellm-ablation-joint", MODALITIES, args.steps),
        "1-expert": recipe(base, "onellm-ablation-1-expert", MODALITIES, args.steps, experts=1),
        "constant": recipe(base, "onellm-ablation-constant", MODALITIES, args.steps, soft=False),
    }
    for m in MODALITIES:
        runs[f"only-{m}"] = recipe(
            base, f"onellm-ablation-only-{m}", [m], max(1, args.steps // len(MODALITIES))
        )
    results = {}
    for name, text in runs.items():
        if args.only and name not in args.only:
            continue
        report = out / f"{name}.json"
        if not report.exists():
            path = out / f"{name}.toml"
            path.write_text(text)
            print(f"running {name} …", file=sys.stderr, flush=True)
            done = subprocess.run(
                [args.omni, "train", "onellm", "--stage", "1", "--config", str(path), "--json"],
                check=True,
                capture_output=True,
                text=True,
            )
            report.write_text(done.stdout)
        results[name] = json.loads(report.read_text())["evaluation"]

    def cell(run, m):
        ev = results.get(run, {})
        held, seen = ev.get("modalities", {}).get(m), ev.get("seen_pairs", {}).get(m)
        if not held:
            return "–"
        text = f"{100 * held['accuracy']:.0f}%"
        return text + (f" / {100 * seen['accuracy']:.0f}%" if seen else "")

    cols = [r for r in ["joint", "1-expert", "constant"] if r in results]
    print("| modality | chance | " + " | ".join(cols) + " | separate UPM |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    for m in MODALITIES:
        chance = next(
            (r["modalities"][m]["chance"] for r in results.values() if m in r["modalities"]),
            None,
        )
        chance = f"{100 * chance:.0f}%" if chance is not None else "–"
        row = [cell(c, m) for c in cols] + [cell(f"only-{m}", m)]
        print(f"| {m} | {chance} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
