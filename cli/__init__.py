"""The `minicluster` command line: parsing, output and exit codes only."""
