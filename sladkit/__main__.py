"""`python -m sladkit` (also `torchrun -m sladkit`)."""

from sladkit.cli import main

if __name__ == "__main__":
    main()
