"""The commands, side by side: each a recipe that reads top to bottom (plan, build, run the
pipeline, close the sinks) over the layers below. They never import each other; `runner.cli`
parses arguments and calls them."""
