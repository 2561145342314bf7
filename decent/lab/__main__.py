"""`python -m decent.lab`: the same as `decent lab`."""

from decent.lab.main import lab_main

if __name__ == "__main__":
    raise SystemExit(lab_main())
