"""Replaced by benchmarks/fetch.py, which measures what a user waits for: the whole
`aggregator fetch` process (parse, dedupe, store, classify, publish), where this script
switched classify and publish off. Kept as an alias so old commands still run:

    .venv/bin/python benchmarks/ingest.py [benchmarks/fetch.py's options]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fetch import main

if __name__ == "__main__":
    main()
