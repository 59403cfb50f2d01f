"""Tables of the application's own jobs (the example jobs' data), on the plugin's metadata so that
one set of migrations and one "models match the schema" test cover them."""

from __future__ import annotations
