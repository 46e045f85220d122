#!/usr/bin/env python3
"""Writes crates/omni/data/imagenet-1k-classes.tsv: the ImageNet-1k classes in model index
order, one `synset<TAB>lemmas` line per class, from timm's
`timm/data/_info/imagenet_synsets.txt` (index order) and `imagenet_synset_to_lemma.txt`.

    /work/peers/bin/python scripts/make_imagenet_labels.py   # any python with timm installed
"""

from pathlib import Path

import timm

INFO = Path(timm.__file__).parent / "data" / "_info"
OUT = Path(__file__).resolve().parent.parent / "crates" / "omni" / "data" / "imagenet-1k-classes.tsv"

synsets = [l.strip() for l in (INFO / "imagenet_synsets.txt").read_text().splitlines() if l.strip()]
lemmas = dict(l.split("\t", 1) for l in (INFO / "imagenet_synset_to_lemma.txt").read_text().splitlines() if "\t" in l)
assert len(synsets) == 1000, len(synsets)
OUT.write_text("".join(f"{s}\t{lemmas[s].strip()}\n" for s in synsets))
print(f"wrote {OUT} (timm {timm.__version__})")
