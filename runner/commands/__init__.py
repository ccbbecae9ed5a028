"""Command recipes: each reads top to bottom (plan, build, run, report) and imports the layers below."""
