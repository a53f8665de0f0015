"""``python -m metrics ...``: the metrics command group (also ``toonlab metrics``)."""

from metrics.cli import main

if __name__ == "__main__":
    main()
