"""This repository's tests: the plugin's and the reference project's."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
