"""Tag articles with a trained newstagger model: a shim over ``newstagger tag`` (newstagger/cli.py).

    python predict.py --model runs/default corpus.jsonl more.csv --text-column body --output tags.jsonl
    python predict.py --model runs/default data/examples/ --pretty
    cat articles.jsonl | python predict.py --model runs/default -

Same options, same output bytes and the same exit statuses as ``newstagger tag`` (see --help).
"""

import sys

from newstagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["tag", *sys.argv[1:]], prog="predict.py"))
