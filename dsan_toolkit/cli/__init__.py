"""The `dsan` command line: a thin shell over the library."""
