"""The `streamrec` command line: thin Typer commands over jobs, workers and the local stack."""
