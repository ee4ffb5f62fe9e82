"""`python -m sfdet ...` (also what torchrun launches)."""

from sfdet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
