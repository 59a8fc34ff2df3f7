"""The `pixquery` command line (`main.main`): one argparse parser; commands in `commands`, `organize`, `tools`."""
