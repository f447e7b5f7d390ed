"""Peak memory and speed of `prompt_mixture` on a dataset of 10k and 100k rows (issue 29): the streamed loader reads a
Parquet row group at a time and stores each image as it is met, so its peak RSS should not grow with the file.

    flock /tmp/cpu2.lock .venv/bin/python bench/dataset_load.py all --data /tmp/dataset_load   # ~15 min, 2 cores
    .venv/bin/python bench/dataset_load.py build --data /tmp/dataset_load --rows 10000
    .venv/bin/python bench/dataset_load.py measure --data /tmp/dataset_load --rows 10000 --old 6307903

Data (`build`, under --data, never in the repo): scikit-learn's digits at 56x56, row i the scan i % 1797 with 17
pixels of its top row set from the bits of i, so every row's image is distinct (100k images stored, not 1797).
Two forms of the same rows:
- `embedded-N/data/train-0000k-of-0000m.parquet`: a Hugging Face hub download, written by `datasets`'
  `Dataset.to_parquet` in shards of 10k rows: an Image column `image` ({bytes: PNG, path: None}), question, answer
  (the digit as text), no answer_type (the config gives `format: native, columns: {images: image}, answer_type:
  number`). Built a shard at a time, so the builder never holds every image.
- `paths-N/data.parquet`: this project's native columns in one file, images as a list of relative PNG paths
  (`paths-N/images`, a link to the shared PNG folder): the only form the loader before issue 29 reads.

Measurement (`measure`): each (loader, form, rows) runs in a fresh process (`--one`) that materializes the real
`prompt_mixture` asset of a one-category config (n_train = n_dev = n_bench = rows, so every row is kept) into a fresh
store, and reports its RSS after imports (baseline), the wall time of the materialization and the process's peak RSS
(`VmHWM`). `--old COMMIT` measures the loader of that commit too (a `git worktree` under /tmp, removed after) on
the paths form, beside the streamed loader on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUESTION = "Which digit is written in the image?"
SIZE = 56
SHARD_ROWS = 10_000
BITS = 17  # pixels of the top row set from the row index: 2**17 > 100k distinct images


def digit_png(scans, labels, i: int) -> tuple[bytes, str]:
    """Row i's image (PNG bytes) and answer."""
    import io

    import numpy as np
    from PIL import Image

    pixels = (255 - scans[i % len(scans)] * 255 / 16).astype("uint8")
    big = np.kron(pixels, np.ones((SIZE // 8, SIZE // 8), dtype="uint8"))
    big[0, :BITS] = [0 if i >> bit & 1 else 255 for bit in range(BITS)]
    buffer = io.BytesIO()
    Image.fromarray(big, mode="L").convert("RGB").save(buffer, "PNG")
    return buffer.getvalue(), str(labels[i % len(labels)])


def build(data: Path, sizes: list[int]) -> None:
    """Both forms of the first n rows for each n in `sizes` (PNGs shared: the largest size's, written once)."""
    import datasets
    import polars as pl
    from sklearn.datasets import load_digits

    datasets.disable_progress_bars()
    digits = load_digits()
    scans, labels = digits.images, digits.target
    pngs = data / "images"
    pngs.mkdir(parents=True, exist_ok=True)
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    for n in sizes:
        shards = -(-n // SHARD_ROWS)
        embedded, paths = data / f"embedded-{n}", data / f"paths-{n}"
        (embedded / "data").mkdir(parents=True, exist_ok=True)
        paths.mkdir(parents=True, exist_ok=True)
        if not (paths / "images").exists():
            (paths / "images").symlink_to(pngs)
        answers, names = [], []
        for shard in range(shards):
            rows = range(shard * SHARD_ROWS, min(n, (shard + 1) * SHARD_ROWS))
            images, shard_answers = [], []
            for i in rows:
                png, answer = digit_png(scans, labels, i)
                name = f"images/digit_{i:06d}.png"
                if not (data / name).exists():
                    (data / name).write_bytes(png)
                images.append({"bytes": png, "path": None})
                shard_answers.append(answer)
                names.append(name)
            columns = {"image": images, "question": [QUESTION] * len(rows), "answer": shard_answers}
            shard_path = embedded / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
            datasets.Dataset.from_dict(columns, features=features).to_parquet(str(shard_path))
            answers += shard_answers
        pl.DataFrame(
            {
                "question": [QUESTION] * n,
                "answer": answers,
                "answer_type": ["number"] * n,
                "images": [[p] for p in names],
            }
        ).write_parquet(paths / "data.parquet")
        print(f"built {n} rows: {shards} shards in {embedded}, {paths / 'data.parquet'}", file=sys.stderr)


def config_text(source: Path, rows: int, embedded: bool) -> str:
    """A one-category config whose dataset keeps every row; the embedded form is read by its column mapping."""
    mapping = ", format: native, columns: {images: image}, answer_type: number" if embedded else ""
    return (
        "model: {path: embedded, device: cpu}\n"
        f"categories:\n  digits: {{source: {source}{mapping}, n_train: {rows}, n_dev: {rows}, n_bench: {rows}, bootstrap_fraction: 0}}\n"
    )


def memory(field: str) -> float:
    """MiB of this process's `field` in /proc/self/status: VmRSS now, VmHWM its peak. Not `ru_maxrss`: Linux carries
    that over exec from the parent, so a child of a large parent reads the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def one(source: Path, rows: int, embedded: bool) -> dict:
    """Materialize prompt_mixture[digits] in this process; its timings and RSS (call in a fresh process)."""
    import dagster as dg

    from vlm_rl_assets.graph import build_graph
    from vlm_rl_assets.orchestration.resources import PipelineResource

    with tempfile.TemporaryDirectory(prefix="dataset_load_") as tmp:
        config = Path(tmp) / "pipeline.yaml"
        config.write_text(config_text(source, rows, embedded))
        resources = {"pipeline": PipelineResource.from_file(str(config), str(Path(tmp) / "store"))}
        graph = build_graph(resources["pipeline"].config).everything
        baseline = memory("VmRSS")
        start = time.perf_counter()
        result = dg.materialize(graph, selection=["prompt_mixture"], partition_key="digits", resources=resources)
        seconds = time.perf_counter() - start
    metadata = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    kept = sum(metadata[f"{split}_prompts"] for split in ("train", "dev", "bench"))
    peak = memory("VmHWM")
    import vlm_rl_assets

    where = str(Path(vlm_rl_assets.__file__).parents[1])
    return {
        "code": where,
        "rows": metadata["input_rows"],
        "kept": kept,
        "seconds": seconds,
        "baseline_mib": baseline,
        "peak_mib": peak,
    }


def measure(data: Path, sizes: list[int], old: str | None) -> list[dict]:
    """Each cell in a fresh process: the streamed (working tree's) loader on both forms, the `old` commit's on the paths form."""
    cells = [("streamed", "embedded", n) for n in sizes] + [("streamed", "paths", n) for n in sizes]
    worktree = None
    if old:
        worktree = Path(tempfile.gettempdir()) / "old_loader"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), old], check=True)
        cells += [(f"before ({old})", "paths", n) for n in sizes]
    results = []
    try:
        for loader, form, n in cells:
            repo = worktree if loader.startswith("before") else REPO
            source = data / f"{form}-{n}" / ("data" if form == "embedded" else "data.parquet")
            command = [sys.executable, __file__, "one", "--source", str(source), "--rows", str(n)]
            env = {**os.environ, "PYTHONPATH": str(repo)}
            out = subprocess.run(command + (["--embedded"] if form == "embedded" else []), env=env, cwd=repo, check=True,
                                 capture_output=True, text=True)  # fmt: skip
            results.append({"loader": loader, "form": form, **json.loads(out.stdout.strip().splitlines()[-1])})
            print(row(results[-1]), file=sys.stderr)
    finally:
        if worktree:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=True)
    return results


def two_digits(x: float) -> str:
    """x to 2 significant figures, with thousands separators: what a rate or time on a shared machine means."""
    return f"{float(f'{x:.2g}'):,.{max(0, 2 - len(str(int(x))))}f}"


def row(r: dict) -> str:
    return (
        f"| {r['loader']} | {r['form']} | {r['rows']:,} | {two_digits(r['seconds'])} "
        f"| {two_digits(r['rows'] / r['seconds'])} | {r['peak_mib']:,.0f} | {r['peak_mib'] / r['baseline_mib']:.1f} |"
    )


def table(results: list[dict]) -> str:
    head = "| loader | form | rows | seconds | rows/s | peak RSS MiB | peak / baseline |\n|---|---|--:|--:|--:|--:|--:|"
    return "\n".join([head, *map(row, results)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["build", "measure", "all", "one"])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dataset_load")
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--old", default="6307903", help="the commit before issue 29 ('' to skip)")
    parser.add_argument("--out", type=Path, default=HERE / "dataset_load.json")
    parser.add_argument("--source", type=Path, help="one: the dataset")
    parser.add_argument("--embedded", action="store_true", help="one: the source is the embedded-image form")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    if args.step == "one":
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(REPO)))
        print(json.dumps(one(args.source, sizes[0], args.embedded)))
        return
    if args.step == "build":
        build(args.data, sorted(sizes))
    if args.step == "all":  # in its own process: the builder's memory is gone before any measurement starts
        subprocess.run([sys.executable, __file__, "build", "--data", str(args.data), "--rows", args.rows], check=True)
    if args.step in ("measure", "all"):
        results = measure(args.data, sizes, args.old or None)
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        machine = f"{cpu}, {os.cpu_count()} cores"
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
        print(table(results))


if __name__ == "__main__":
    main()
