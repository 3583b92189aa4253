#!/usr/bin/env python3
"""Draw learning curves of one or more runs to a PNG (see ``agents/plots.py``).

    python scripts/plot.py runs/cartpole-*/ --threshold 195 --out curves.png
"""

from agents.plots import main

if __name__ == "__main__":
    raise SystemExit(main())
