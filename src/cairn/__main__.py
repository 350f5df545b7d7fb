"""``python -m cairn``: the same as the ``cairn`` command."""

from cairn._cli import main

if __name__ == "__main__":  # pragma: no branch
    main()
