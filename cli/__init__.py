"""cli: the `dctq` command (Typer). main.py joins one module per command (*_cmd.py); options.py parses
shared option forms, progress.py draws progress bars, common.py holds the console, JSON output and the
DctqError -> exit code 1 rule. Commands map options to library objects and format what they return."""
