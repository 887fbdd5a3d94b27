"""Run the rnnkit benchmark grid: the same as `rnnkit bench` (arguments pass through, see --help).

python benchmarks/bench.py --quick
python benchmarks/bench.py --json > bench.json
"""

import sys

from rnnkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
