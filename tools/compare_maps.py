"""Agreement of the saliency maps of two stores of the same utterances (e.g. bf16 against fp32, or
two devices): per utterance the Pearson r of the two maps on what enters the correlation (content
rows, SM^X max2d-pooled to T', min-max per token), with each map's split-half reliability.

  python tools/compare_maps.py A/results/base/en-en/test/saliency/smx.zip \\
      B/results/base/en-en/test/saliency/smx.zip [--tsv out.tsv]      (or saliency/smh-p0.7.zip)
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from caspes.analysis.correlation import map_agreement
from caspes.explain.maps import POOLINGS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="saliency store A (.zip)")
    ap.add_argument("b", help="saliency store B (.zip)")
    ap.add_argument("--pooling", default="max2d", choices=POOLINGS, help="SM^X pooling to T'")
    ap.add_argument("--factor", type=int, default=4, help="the model's subsampling (ours 4, Whisper 2)")
    ap.add_argument("--tsv", default=None, help="also write the per-utterance figures here")
    args = ap.parse_args()
    table = pd.DataFrame(map_agreement(args.a, args.b, args.pooling, args.factor))
    if args.tsv:
        table.to_csv(args.tsv, sep="\t", index=False, float_format="%.6f")
    r = table["r"].dropna()
    print(f"utterances: {len(table)} ({len(table) - len(r)} with an undefined r)")
    if len(r):
        print(f"r(A, B): median {np.median(r):.5f}, min {r.min():.5f}, mean {r.mean():.5f}")
    for name in ("a", "b"):
        rel = table[f"reliability_{name}"].dropna()
        mean = rel.mean() if len(rel) else math.nan
        print(f"mean reliability {name.upper()}: {mean:.4f} ({len(rel)} utterances)")


if __name__ == "__main__":
    main()
