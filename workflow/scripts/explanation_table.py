"""Rule explanation_table: deletion AUC, size AUC and cost of every saliency store in one table."""

from pathlib import Path

import pandas as pd

from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
rows = []
for path in (Path(p) for p in snakemake.input if "/deletion/" in p):
    split_dir = path.parent.parent
    name = path.stem
    model, pair, split = split_dir.parts[-3:]
    curve = pd.read_csv(path, sep="\t")
    size = pd.read_csv(split_dir / "size" / f"{name}.tsv", sep="\t")
    timing = pd.read_csv(split_dir / "saliency" / f"{name}.timing.tsv", sep="\t")
    n = int(timing["utterances"].sum())
    rows.append({
        "model": model, "direction": pair, "split": split, "map": name, "unit": curve["unit"][0],
        "metric": curve["metric"][0], "deletion_auc": curve["auc"][0], "size_auc": size["auc"][0],
        "utterances": n, "seconds_per_utterance": round(timing["seconds"].sum() / max(n, 1), 3),
        "device": ",".join(sorted(set(timing["device"]))),
    })  # fmt: skip
table = pd.DataFrame(rows)
table.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("\n%s", table.to_string(index=False))
